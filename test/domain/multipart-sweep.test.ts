import { randomBytes } from 'node:crypto';
import { GetBucketLifecycleConfigurationCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MultipartSweep } from '../../src/domain/multipart-sweep.js';
import { MultipartUploads } from '../../src/domain/multipart-uploads.js';
import { readUploadUsage } from '../../src/domain/usage/upload-usage.js';
import { LIFECYCLE_RULE_ID, lifecycleDays } from '../../src/storage/s3/bucket-bootstrap.js';
import { CountingStore } from '../helpers/counting-store.js';
import { rawS3Client, rgwForTests, startServerOn } from '../helpers/rgw.js';
import type { TestServer } from '../helpers/server.js';

// The sweep of expired multipart uploads (issue 13, item 5) on both stores behind a real
// server (the disk store and S3 on Ceph RGW), on the project's database dialect. Time is
// injected: uploads are made with a 30-second lifetime and the sweep's clock is a minute ahead.

const rgw = await rgwForTests('multipart sweep suite');
const SHORT = { lifetimeSeconds: 30 };
const ahead = () => new Date(Date.now() + 60_000);

describe.each(['disk', 's3'] as const)('multipart sweep: %s', (storeKind) => {
  describe.skipIf(storeKind === 's3' && rgw.skip)(`${storeKind} store`, () => {
    let server: TestServer;
    let apiKey: string;
    let short: MultipartUploads;
    let long: MultipartUploads;

    beforeAll(async () => {
      server = await startServerOn(storeKind, rgw, 'mp-sweep', storeKind === 's3' ? { S3_APPLY_LIFECYCLE: 'true' } : {});
      expect(server.store.kind).toBe(storeKind);
      apiKey = (await server.createKey('alice')).key;
      short = new MultipartUploads(server.db, server.store, 300, null, SHORT);
      long = new MultipartUploads(server.db, server.store, 300, null);
    }, 60_000);

    afterAll(async () => {
      await server?.stop();
    }, 60_000);

    /** A multipart upload of alice's with one part of `bytes` received. */
    async function started(uploads: MultipartUploads, bytes = 1024): Promise<{ key: string; uploadId: string; etag: string }> {
      const { key, uploadId } = await uploads.create('alice', { type: 'video/mp4', filename: 'clip.mp4' });
      const { url } = await uploads.signPart('alice', key, uploadId, 1);
      const res = await fetch(url, { method: 'PUT', body: new Uint8Array(randomBytes(bytes)) });
      expect(res.status).toBe(200);
      return { key, uploadId, etag: res.headers.get('etag')! };
    }

    const stateOf = async (key: string) => (await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(key)}`, { key: apiKey })).body.state;
    const reserved = async (now: Date) => (await readUploadUsage(server.db, 'alice', now, Infinity)).reservedBytes;

    it('aborts an expired open upload (parts gone, expired, reservation freed); leaves an open and a completed one alone', async () => {
      const expired = await started(short);
      const open = await started(long);
      const done = await started(short);
      await short.complete('alice', done.key, done.uploadId, [{ partNumber: 1, etag: done.etag }]);
      expect(await stateOf(expired.key)).toBe('uploading');
      const now = ahead();
      const before = await reserved(now);

      const result = await new MultipartSweep(server.db, server.store, { intervalMs: 60_000, now: () => now, lifetimeSeconds: 30 }).runOnce();

      expect(result.aborted).toEqual([{ key: expired.key, userId: 'alice', uploadId: expired.uploadId }]);
      expect(await server.store.listParts(expired.key, expired.uploadId)).toBe('missing');
      const record = await server.db.selectFrom('uploads').selectAll().where('s3_key', '=', expired.key).executeTakeFirstOrThrow();
      // Stored as what it is (migration 011): expired, when; no rejection reason.
      expect(record).toMatchObject({ state: 'expired', reason: null, expired_at: now.toISOString() });
      expect(await stateOf(expired.key)).toBe('expired');
      // Its max_bytes (no declared size) no longer reserved; the open one's still is.
      expect(before - (await reserved(now))).toBe(Number(record.max_bytes));

      expect(await server.store.listParts(open.key, open.uploadId)).toEqual([expect.objectContaining({ partNumber: 1, size: 1024 })]);
      expect(await stateOf(open.key)).toBe('uploading');
      // The completed one: its record and its object untouched (rather, as verification left them).
      expect(['uploaded', 'verified', 'rejected']).toContain((await server.db.selectFrom('uploads').select('state').where('s3_key', '=', done.key).executeTakeFirstOrThrow()).state);
      expect((await server.db.selectFrom('uploads').select('expired_at').where('s3_key', '=', done.key).executeTakeFirstOrThrow()).expired_at).toBeNull();

      // Idempotent: a second run finds nothing more to do.
      expect((await new MultipartSweep(server.db, server.store, { intervalMs: 60_000, now: () => now, lifetimeSeconds: 30 }).runOnce()).aborted).toEqual([]);
      await long.abort('alice', open.key, open.uploadId);
    }, 60_000);

    it('two sweepers at once (small batches) abort each upload exactly once', async () => {
      const uploads = await Promise.all(Array.from({ length: 7 }, () => started(short)));
      const counting = new CountingStore(server.store);
      const now = ahead();
      const sweeper = () => new MultipartSweep(server.db, counting, { intervalMs: 60_000, now: () => now, batchSize: 2, lifetimeSeconds: 30 });
      const [a, b] = await Promise.all([sweeper().runOnce(), sweeper().runOnce()]);
      const keys = [...a.aborted, ...b.aborted].map((u) => u.key).sort();
      expect(keys).toEqual(uploads.map((u) => u.key).sort());
      expect(counting.calls.filter((c) => c.method === 'abortMultipart').map((c) => c.args[0]).sort()).toEqual(keys);
      for (const u of uploads) expect(await server.store.listParts(u.key, u.uploadId)).toBe('missing');
    }, 60_000);

    it.skipIf(storeKind !== 'disk')('disk: removes upload directories older than the lifetime that no open record names', async () => {
      // A crash between the store's create and the record's insert: a directory no record names.
      const stray = { key: `users/alice/user-uploads/${randomBytes(8).toString('hex')}/clip.mp4`, uploadId: '' };
      stray.uploadId = (await server.store.createMultipart({ key: stray.key, contentType: 'video/mp4' })).uploadId;
      // A crash between the sweep's claim and its abort: a closed record, its parts still there.
      const claimed = await started(short);
      await server.db.updateTable('uploads').set({ state: 'expired', expired_at: new Date().toISOString() }).where('s3_key', '=', claimed.key).execute();
      // An open upload whose directory is as old, but whose record is still live: kept.
      const open = await started(long);

      const now = ahead();
      const result = await new MultipartSweep(server.db, server.store, { intervalMs: 60_000, now: () => now, lifetimeSeconds: 30 }).runOnce();
      expect(result).toEqual({ aborted: [], orphans: 2 });
      expect(await server.store.listParts(stray.key, stray.uploadId)).toBe('missing');
      expect(await server.store.listParts(claimed.key, claimed.uploadId)).toBe('missing');
      expect(await server.store.listParts(open.key, open.uploadId)).toHaveLength(1);
      await long.abort('alice', open.key, open.uploadId);
    }, 60_000);

    it.skipIf(storeKind !== 's3')('s3: S3_APPLY_LIFECYCLE=true put the AbortIncompleteMultipartUpload rule on the bucket (1 day for 24 h)', async () => {
      const client = rawS3Client(rgw);
      try {
        const out = await client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: (server.store as unknown as { bucket: string }).bucket }));
        expect(out.Rules).toEqual([
          expect.objectContaining({ ID: LIFECYCLE_RULE_ID, Status: 'Enabled', AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }),
        ]);
      } finally {
        client.destroy();
      }
    });
  });
});

it('the lifecycle rule\'s days: the lifetime in whole days, rounded up, at least 1', () => {
  expect([30, 86_400, 86_401, 3 * 86_400].map(lifecycleDays)).toEqual([1, 1, 2, 3]);
});
