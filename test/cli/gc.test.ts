import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUploadKey } from '../../src/domain/object-keys.js';
import { ensureBuilt, runKeyframe } from '../helpers/build.js';
import { presignAndPut, readFixture } from '../helpers/media-fixtures.js';
import { removeBucket, rgwForTests, s3ServerEnv, uniqueBucketName, assertRgwReachable } from '../helpers/rgw.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

// Issue 15's acceptance for reconciliation: `keyframe gc --dry-run` finds an orphan object planted in
// the bucket and a record whose object a test removed, and changes nothing; `keyframe gc` then removes
// the orphan and marks the record deleted. An orphan younger than the upload URL lifetime (it may be
// an upload in flight) is only counted, and left alone by both. On both stores, both databases.

const rgw = await rgwForTests('keyframe gc suite');
const PNG = readFixture('sample.png');
/**
 * The floor below which an orphan is left alone: short, so that the test waits seconds only, yet
 * long enough that an orphan planted just before a command is still young when the command looks.
 */
const URL_TTL_SECONDS = 10;

describe.each(['disk', 's3'] as const)('keyframe gc on the %s store', (storeKind) => {
  describe.skipIf(storeKind === 's3' && rgw.skip)('reconciliation', () => {
    let server: TestServer;
    let env: Record<string, string>;
    let bucket: string | null = null;
    let apiKey: string;

    beforeAll(async () => {
      ensureBuilt();
      let storeEnv: Record<string, string> = {};
      if (storeKind === 's3') {
        assertRgwReachable(rgw);
        bucket = uniqueBucketName('gc');
        storeEnv = s3ServerEnv(rgw, bucket);
      }
      server = await startTestServer({ ...storeEnv, KEYFRAME_UPLOAD_URL_TTL_SECONDS: String(URL_TTL_SECONDS) });
      // The CLI runs on the server's own database and store; with a test's lifetime it never applies a retention.
      env = { ...server.database.env, ...storeEnv, KEYFRAME_UPLOAD_URL_TTL_SECONDS: String(URL_TTL_SECONDS) };
      apiKey = (await server.createKey('alice')).key;
    }, 60_000);

    afterAll(async () => {
      await server?.stop();
      if (bucket !== null) await removeBucket(rgw, bucket);
    });

    const statusOf = async (key: string) => (await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(key)}`, { key: apiKey })).body;

    it('dry run lists the planted orphan and the record without object, counts the young orphan, changes nothing; gc repairs', async () => {
      // A reference that stays: verified, its object in place.
      const kept = await presignAndPut(server, apiKey, 'image/png', PNG);
      expect((await statusOf(kept.s3_key)).state).toBe('verified');
      // A record whose object a test removed.
      const lost = await presignAndPut(server, apiKey, 'image/png', PNG);
      expect((await statusOf(lost.s3_key)).state).toBe('verified');
      await server.store.delete(lost.s3_key);
      // An orphan: an object in the bucket that no record names (what a crash between store and database leaves).
      const orphan = newUploadKey('alice', 'png').key;
      await server.store.put(orphan, Readable.from([PNG]), 'image/png');
      await sleep(URL_TTL_SECONDS * 1000 + 1500);
      // A younger one: it may be an upload in flight.
      const young = newUploadKey('alice', 'png').key;
      await server.store.put(young, Readable.from([PNG]), 'image/png');

      const dry = await runKeyframe(['gc', '--dry-run', '--json'], env);
      // (stderr may carry the AWS SDK's notice about Node versions, nothing of ours)
      expect(dry.stderr).not.toContain('keyframe:');
      expect(dry.code).toBe(0);
      const report = JSON.parse(dry.stdout);
      expect(report.dry_run).toBe(true);
      expect(report.orphans).toEqual([expect.objectContaining({ key: orphan, size: PNG.length, role: 'upload', why: 'no record' })]);
      expect(report.orphans[0].ageSeconds).toBeGreaterThanOrEqual(URL_TTL_SECONDS);
      expect(report.orphanTotals).toEqual({ objects: 1, bytes: PNG.length });
      expect(report.youngOrphans).toEqual({ objects: 1, bytes: PNG.length });
      expect(report.missing).toEqual([expect.objectContaining({ record: 'upload', id: lost.s3_key, state: 'verified' })]);
      expect(report.missingTotal).toBe(1);
      expect(report.scanned).toEqual({ objects: 3, bytes: 3 * PNG.length });
      expect(report.applied).toBeUndefined();

      // Nothing changed.
      expect(await server.store.head(orphan)).not.toBeNull();
      expect(await server.store.head(young)).not.toBeNull();
      expect((await statusOf(lost.s3_key)).state).toBe('verified');

      const text = await runKeyframe(['gc', '--dry-run'], env);
      expect(text.code).toBe(0);
      expect(text.stdout).toContain(`orphan objects (no record, older than ${URL_TTL_SECONDS}s): 1 objects`);
      expect(text.stdout).toContain(orphan);
      expect(text.stdout).toContain(`upload ${lost.s3_key}\tverified`);
      expect(text.stdout).toContain('dry run: nothing changed');

      // Planted just before the command that applies: young, whatever the dry runs took.
      const youngest = newUploadKey('alice', 'png').key;
      await server.store.put(youngest, Readable.from([PNG]), 'image/png');
      const applied = await runKeyframe(['gc', '--json'], env);
      expect(applied.stderr).not.toContain('keyframe:');
      expect(applied.code).toBe(0);
      const outcome = JSON.parse(applied.stdout);
      expect(outcome.dry_run).toBe(false);
      expect(outcome.applied.repaired.recordsMarked).toBe(1);
      expect(outcome.orphans.map((o: { key: string }) => o.key)).toContain(orphan);
      expect(outcome.orphans.map((o: { key: string }) => o.key)).not.toContain(youngest);
      expect(await server.store.head(orphan)).toBeNull();
      expect(await server.store.head(youngest)).not.toBeNull();
      expect((await statusOf(lost.s3_key)).state).toBe('deleted');
      // The reference in use by nobody but within its retention is untouched.
      expect((await statusOf(kept.s3_key)).state).toBe('verified');
      expect(await server.store.head(kept.s3_key)).not.toBeNull();

      // Once repaired, no record is missing its object any more.
      const after = JSON.parse((await runKeyframe(['gc', '--dry-run', '--json'], env)).stdout);
      expect(after.missingTotal).toBe(0);
      expect(after.orphans.map((o: { key: string }) => o.key)).not.toContain(orphan);
    }, 120_000);
  });
});
