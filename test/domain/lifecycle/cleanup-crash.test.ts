import { afterEach, describe, expect, it } from 'vitest';
import { UploadCleanup } from '../../../src/domain/lifecycle/cleanup.js';
import { killChildren, spawnTsChild } from '../../helpers/child-process.js';
import { presignAndPut, readFixture } from '../../helpers/media-fixtures.js';
import { removeBucket, rgwForTests, s3ServerEnv, uniqueBucketName, assertRgwReachable } from '../../helpers/rgw.js';
import { startTestServer, type TestServer } from '../../helpers/server.js';
import { DAY, MovableClock, policy, runCleanup } from './support/lifecycle.js';

// A cleanup run SIGKILLed between the mark and the object's delete, or between the delete and
// the finalise, leaves no live record (uploaded / verified) without its object: the record is
// `deleting` (answered `deleted`, refused to generations like a missing key), and the next run,
// once the dead runner's lease lapsed, finishes the job. On both stores, the project's dialect.

const rgw = await rgwForTests('upload cleanup crash suite');
const PNG = readFixture('sample.png');

afterEach(() => killChildren());

describe.each(['disk', 's3'] as const)('a cleanup killed mid-run: %s', (storeKind) => {
  it.skipIf(storeKind === 's3' && rgw.skip).each([
    ['mark', 'after the mark, before the delete', true],
    ['delete', 'after the delete, before the finalise', false],
  ] as const)('at the %s seam (%s): no live record without its object; the next run finishes', async (stopAt, _when, objectLeft) => {
    let storeEnv: Record<string, string> = {};
    let bucket: string | null = null;
    if (storeKind === 's3') {
      assertRgwReachable(rgw);
      bucket = uniqueBucketName('lifecycle-crash');
      storeEnv = s3ServerEnv(rgw, bucket);
    }
    let server: TestServer | null = null;
    try {
      server = await startTestServer({ ...storeEnv, KEYFRAME_CLEANUP_INTERVAL: '1d' });
      const apiKey = (await server.createKey('alice')).key;
      const { s3_key: key } = await presignAndPut(server, apiKey, 'image/png', PNG);
      const status = async () => (await server!.api('GET', `/api/uploads/status?key=${encodeURIComponent(key)}`, { key: apiKey })).body;
      expect((await status()).state).toBe('verified');
      // The server's own start-up run is over (it runs again a day later): the child gets the lease.
      await runCleanup(server.db, server.store, { policy: policy() });
      const row = () => server!.db.selectFrom('uploads').selectAll().where('s3_key', '=', key).executeTakeFirstOrThrow();
      const childNow = new Date(Date.parse((await row()).uploaded_at!) + 8 * DAY * 1000);

      const child = spawnTsChild('test/domain/lifecycle/support/cleanup-child.ts', {
        KEYFRAME_CHILD_ENV: JSON.stringify({ ...server.database.env, ...storeEnv, LOG_LEVEL: 'silent' }),
        KEYFRAME_CHILD_NOW: childNow.toISOString(),
        KEYFRAME_CHILD_STOP_AT: stopAt,
      });
      await new Promise<void>((resolve, reject) => {
        child.child.stdout!.on('data', () => child.out().includes(`stopped ${key}`) && resolve());
        void child.exited.then(() => reject(new Error(`child exited before stopping: ${child.out()} ${child.err()}`)));
      });
      await child.kill();

      // What the crash left: a record that is not live, with or without its object; never a live one without.
      const left = await row();
      expect(left).toMatchObject({ state: 'deleting', deleted_reason: 'unused', delete_marked_at: childNow.toISOString(), deleted_at: null });
      expect((await server.store.head(key)) !== null).toBe(objectLeft);
      expect((await status()).state).toBe('deleted');
      const created = await server.api('POST', '/api/generations', { key: apiKey, body: { prompt: 'after the crash', modelName: 'keyframe-local', startFrameKey: key } });
      expect(created.status).toBe(404);

      // The dead runner's lease holds for twice the run's budget; past it, the next run resumes.
      const clock = new MovableClock(childNow);
      expect((await new UploadCleanup(server.db, server.store, { policy: policy(), clock }).runOnce()).ran).toBe(false);
      clock.advance(61);
      const result = await runCleanup(server.db, server.store, { policy: policy(), clock });
      expect(result.resumed).toBe(1);
      expect(await row()).toMatchObject({ state: 'deleted', deleted_at: clock.now().toISOString() });
      expect(await server.store.head(key)).toBeNull();
    } finally {
      await server?.stop();
      if (bucket !== null) await removeBucket(rgw, bucket);
    }
  }, 120_000);
});
