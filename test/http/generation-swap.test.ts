import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForGeneration } from '../helpers/generations.js';
import { presignAndPut, readFixture } from '../helpers/media-fixtures.js';
import { removeBucket, rgwForTests, s3ServerEnv, uniqueBucketName } from '../helpers/rgw.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * Swap (finding 4a) over HTTP: a verified reference's still-valid upload URL
 * gets a second PUT with other bytes while its generation waits in the queue.
 * S3 takes the PUT (a presigned URL can be replayed): the runner's read pinned
 * to the verified ETag fails the job as "replaced". The disk store writes a key
 * once and refuses the PUT: the job renders the verified bytes. Never are the
 * other bytes rendered. (test/runners/local-runner.test.ts swaps while the
 * runner is already reading the job's other references.)
 */
const rgw = await rgwForTests('generation swap');
const stores = [
  { name: 'disk store', env: (): Record<string, string> => ({}), skip: false },
  { name: 'Ceph RGW', env: (bucket: string) => s3ServerEnv(rgw, bucket), skip: rgw.skip },
] as const;

for (const storage of stores) {
  describe.skipIf(storage.skip)(`reference swap while queued (${storage.name})`, () => {
    let server: TestServer;
    let bucket: string;
    let alice: string;

    beforeAll(async () => {
      bucket = uniqueBucketName('swap');
      server = await startTestServer(storage.env(bucket));
      alice = (await server.createKey('alice')).key;
    });
    afterAll(async () => {
      await server?.stop();
      if (storage.name === 'Ceph RGW') await removeBucket(rgw, bucket).catch(() => {});
    });

    it('a second PUT of the upload URL after verification is refused, or fails the job as "replaced"; other bytes are never rendered', async () => {
      const png = await presignAndPut(server, alice, 'image/png', readFixture('sample.png'));
      const create = (body: Record<string, unknown>) => server.api('POST', '/api/generations', { key: alice, body: { modelName: 'keyframe-local', ...body } });
      // One worker (the default concurrency): a long render keeps the second job queued while its reference changes.
      const busy = await create({ prompt: 'keep the worker busy', resolution: '1080p', duration: '20s' });
      const victim = await create({ prompt: 'p', resolution: '480p', duration: '1s', startFrameKey: png.s3_key });
      expect([busy.status, victim.status]).toEqual([200, 200]);
      const replay = await fetch(png.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: new Uint8Array(readFixture('truncated.png')) });
      await replay.arrayBuffer();

      const busyId = busy.body.generations[0].generation_id;
      const victimId = victim.body.generations[0].generation_id;
      const queued = await server.api('GET', `/api/generations/${victimId}`, { key: alice });
      expect(queued.body.status, 'the second job must still be queued when its reference is replaced').toBe('generating');
      const settled = await waitForGeneration(server.api, alice, victimId, 120_000);
      if (storage.name === 'Ceph RGW') {
        expect(replay.status).toBe(200);
        expect(settled.body).toMatchObject({ status: 'failed', video_url: null, error: 'startFrameKey: the upload was replaced or removed after it was verified' });
      } else if (replay.status === 200) {
        expect(settled.body).toMatchObject({ status: 'failed', video_url: null, error: 'startFrameKey: the upload was replaced or removed after it was verified' });
      } else {
        expect([403, 409]).toContain(replay.status);
        expect(settled.body).toMatchObject({ status: 'completed', error: null });
        expect((await server.store.getRange(png.s3_key, 0, 1 << 20))!.equals(readFixture('sample.png'))).toBe(true);
      }
      expect((await waitForGeneration(server.api, alice, busyId, 120_000)).body.status).toBe('completed');
    }, 180_000);
  });
}
