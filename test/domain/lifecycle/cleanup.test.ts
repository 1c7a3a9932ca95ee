import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UploadCleanup } from '../../../src/domain/lifecycle/cleanup.js';
import { deleteAfter } from '../../../src/domain/lifecycle/delete-after.js';
import { claimReferences } from '../../../src/domain/lifecycle/references.js';
import { randomId } from '../../../src/domain/ids.js';
import { MULTIPART_EXPIRED_REASON } from '../../../src/domain/multipart-uploads.js';
import { generationVideoKey } from '../../../src/domain/object-keys.js';
import { presignAndPut, readFixture } from '../../helpers/media-fixtures.js';
import { rgwForTests, startServerOn } from '../../helpers/rgw.js';
import type { TestServer } from '../../helpers/server.js';
import { addGeneration, DAY, MovableClock, policy, runCleanup, settle } from './support/lifecycle.js';

// The cleanup job of the upload lifecycle (issue 15) behind a real server, on both stores and the
// project's database dialect. Time is a clock the test moves; the server's own cleanup runs once at
// start (the interval is a day) on the same lease, so runs here retry while it holds it.

const rgw = await rgwForTests('upload lifecycle suite');
const PNG = readFixture('sample.png');

describe.each(['disk', 's3'] as const)('upload cleanup: %s', (storeKind) => {
  describe.skipIf(storeKind === 's3' && rgw.skip)(`${storeKind} store`, () => {
    let server: TestServer;
    let apiKey: string;

    beforeAll(async () => {
      server = await startServerOn(storeKind, rgw, 'lifecycle', { KEYFRAME_CLEANUP_INTERVAL: '1d' });
      expect(server.store.kind).toBe(storeKind);
      apiKey = (await server.createKey('alice')).key;
    }, 60_000);

    afterAll(async () => {
      await server?.stop();
    }, 60_000);

    const statusOf = async (key: string) => (await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(key)}`, { key: apiKey })).body;
    const rowOf = (key: string) => server.db.selectFrom('uploads').selectAll().where('s3_key', '=', key).executeTakeFirstOrThrow();

    /** A verified PNG of alice's. */
    async function verifiedUpload(): Promise<string> {
      const { s3_key } = await presignAndPut(server, apiKey, 'image/png', PNG);
      expect((await statusOf(s3_key)).state).toBe('verified');
      return s3_key;
    }

    it('stores `expired` for a pending upload past its URL and the grace with nothing stored; one whose object arrived is kept for verification', async () => {
      const unused = await presignAndPut(server, apiKey, 'image/png', null);
      const arrived = await presignAndPut(server, apiKey, 'image/png', PNG);
      const { expires_at } = await rowOf(unused.s3_key);
      const clock = new MovableClock(new Date(expires_at));
      const rules = policy({ expiryGraceSeconds: 60 });

      clock.advance(59);
      await runCleanup(server.db, server.store, { policy: rules, clock });
      expect((await rowOf(unused.s3_key)).state).toBe('pending');

      clock.advance(2);
      const result = await runCleanup(server.db, server.store, { policy: rules, clock });
      expect(result.expired).toBeGreaterThanOrEqual(1);
      expect(await rowOf(unused.s3_key)).toMatchObject({ state: 'expired', expired_at: clock.now().toISOString() });
      expect(await statusOf(unused.s3_key)).toMatchObject({ state: 'expired', expires_at: null, delete_after: null });
      // The disk store recorded the arrival itself; on S3 nothing did until now. Either way it is verified when asked.
      const row = await rowOf(arrived.s3_key);
      expect(row.state).toBe('uploaded');
      if (storeKind === 's3') expect(row).toMatchObject({ uploaded_at: clock.now().toISOString(), size: PNG.length });
      expect((await statusOf(arrived.s3_key)).state).toBe('verified');
      expect(await server.store.head(arrived.s3_key)).not.toBeNull();
    });

    it('deletes an unused upload once the unused retention passed: object gone, record `deleted` (reason unused), a generation naming it 404s', async () => {
      const key = await verifiedUpload();
      const { uploaded_at } = await rowOf(key);
      const due = new Date(Date.parse(uploaded_at!) + 7 * DAY * 1000);
      expect((await statusOf(key)).delete_after).toBe(due.toISOString());
      const clock = new MovableClock(new Date(due.getTime() - 1000));

      await runCleanup(server.db, server.store, { policy: policy(), clock });
      expect((await rowOf(key)).state).toBe('verified');

      clock.advance(2);
      const result = await runCleanup(server.db, server.store, { policy: policy(), clock });
      expect(result.unused).toBeGreaterThanOrEqual(1);
      expect(await server.store.head(key)).toBeNull();
      expect(await rowOf(key)).toMatchObject({ state: 'deleted', deleted_reason: 'unused', delete_marked_at: clock.now().toISOString(), deleted_at: clock.now().toISOString() });
      expect(await statusOf(key)).toMatchObject({ state: 'deleted', delete_after: null, expires_at: null });
      const created = await server.api('POST', '/api/generations', { key: apiKey, body: { prompt: 'too late', modelName: 'keyframe-local', startFrameKey: key } });
      expect(created.status).toBe(404);
      expect(created.body).toEqual({ error: 'not_found', message: 'startFrameKey: no upload found with this key' });

      // Idempotent: the next run finds nothing of it to do.
      const again = await runCleanup(server.db, server.store, { policy: policy(), clock });
      expect(again).toMatchObject({ resumed: 0 });
      expect((await rowOf(key)).state).toBe('deleted');
    });

    it('never deletes a reference of a queued or running generation; once it settled and the used retention passed, it goes', async () => {
      const key = await verifiedUpload();
      const id = randomId('gen');
      await addGeneration(server.db, id, 'alice', [key], { status: 'generating', createdAt: new Date() });
      const rules = policy({ usedSeconds: 3600 });
      const clock = new MovableClock(new Date(Date.now() + 365 * DAY * 1000));

      await runCleanup(server.db, server.store, { policy: rules, clock });
      expect((await rowOf(key)).state).toBe('verified');
      expect(await server.store.head(key)).not.toBeNull();
      expect(await deleteAfter(server.db, rules, await rowOf(key))).toBeNull();

      const settledAt = clock.now();
      await settle(server.db, id, 'failed', settledAt);
      expect(await deleteAfter(server.db, rules, await rowOf(key))).toBe(new Date(settledAt.getTime() + 3600_000).toISOString());
      clock.advance(3599);
      await runCleanup(server.db, server.store, { policy: rules, clock });
      expect((await rowOf(key)).state).toBe('verified');

      clock.advance(2);
      const result = await runCleanup(server.db, server.store, { policy: rules, clock });
      expect(result.used).toBeGreaterThanOrEqual(1);
      expect(await rowOf(key)).toMatchObject({ state: 'deleted', deleted_reason: 'used' });
      expect(await server.store.head(key)).toBeNull();
    });

    it('deletes a video past the video retention (video_url null from then on), and the references it used with it', async () => {
      const key = await verifiedUpload();
      const id = randomId('gen');
      const videoKey = generationVideoKey('alice', id);
      await server.store.put(videoKey, Readable.from([Buffer.from('not really a video')]), 'video/mp4');
      const completedAt = new Date();
      await addGeneration(server.db, id, 'alice', [key], { status: 'completed', createdAt: new Date(completedAt.getTime() - 60_000), completedAt, videoKey });
      const status = () => server.api('GET', `/api/generations/${id}`, { key: apiKey });
      expect((await status()).body.video_url).toEqual(expect.any(String));
      const rules = policy({ videosSeconds: DAY });
      // Kept as long as the video: due when the video is.
      expect(await deleteAfter(server.db, rules, await rowOf(key))).toBe(new Date(completedAt.getTime() + DAY * 1000).toISOString());
      // The server keeps used references forever (its default policy): its status says so.
      expect((await statusOf(key)).delete_after).toBeNull();

      const clock = new MovableClock(new Date(completedAt.getTime() + DAY * 1000 - 1000));
      await runCleanup(server.db, server.store, { policy: rules, clock });
      expect(await server.store.head(videoKey)).not.toBeNull();
      expect((await rowOf(key)).state).toBe('verified');

      clock.advance(2);
      const result = await runCleanup(server.db, server.store, { policy: rules, clock });
      expect(result).toMatchObject({ videos: 1 });
      expect(result.used).toBeGreaterThanOrEqual(1);
      expect(await server.store.head(videoKey)).toBeNull();
      const generation = await server.db.selectFrom('generations').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
      expect(generation).toMatchObject({ status: 'completed', video_delete_marked_at: clock.now().toISOString(), video_deleted_at: clock.now().toISOString() });
      expect((await status()).body).toMatchObject({ status: 'completed', video_url: null });
      expect(await rowOf(key)).toMatchObject({ state: 'deleted', deleted_reason: 'used' });
    });

    it('a generation created while an upload is marked answers 404, as for a missing key; the mark then finishes', async () => {
      const key = await verifiedUpload();
      const { uploaded_at } = await rowOf(key);
      const clock = new MovableClock(new Date(Date.parse(uploaded_at!) + 8 * DAY * 1000));
      const answers: { status: number; body: unknown }[] = [];
      await runCleanup(server.db, server.store, {
        policy: policy(),
        clock,
        seams: {
          async afterMark(marked) {
            if (marked !== key) return;
            answers.push(await server.api('POST', '/api/generations', { key: apiKey, body: { prompt: 'racing', modelName: 'keyframe-local', startFrameKey: key } }));
            expect(await statusOf(key)).toMatchObject({ state: 'deleted' });
          },
        },
      });
      expect(answers).toMatchObject([{ status: 404, body: { error: 'not_found', message: 'startFrameKey: no upload found with this key' } }]);
      expect((await rowOf(key)).state).toBe('deleted');
      expect(await server.db.selectFrom('generation_references').select('generation_id').where('s3_key', '=', key).execute()).toEqual([]);
    });

    it('a create whose verification passed before the mark, and whose transaction runs after it, finds the row marked: 404', async () => {
      const key = await verifiedUpload();
      await server.db.updateTable('uploads').set({ state: 'deleting', delete_marked_at: new Date().toISOString(), deleted_reason: 'unused' }).where('s3_key', '=', key).execute();
      const other = await verifiedUpload();
      const claim = server.db.transaction().execute((trx) =>
        claimReferences(trx, 'alice', [{ field: 'startFrameKey', key: other }, { field: 'endFrameKey', key }], new Date().toISOString()),
      );
      expect(await claim).toBe('endFrameKey');
      expect((await rowOf(key)).last_used_at).toBeNull();
    });

    it('one runner at a time: of two cleanups at once only one works; a lapsed lease is taken over', async () => {
      const key = await verifiedUpload();
      const { uploaded_at } = await rowOf(key);
      const clock = new MovableClock(new Date(Date.parse(uploaded_at!) + 8 * DAY * 1000));
      await runCleanup(server.db, server.store, { policy: policy(), clock: new MovableClock() }); // the server's start-up run is over
      // While one run is in the middle of its work (held at a seam), another finds the lease taken and does nothing.
      const others: Awaited<ReturnType<UploadCleanup['runOnce']>>[] = [];
      const a = await new UploadCleanup(server.db, server.store, {
        policy: policy(),
        clock,
        holder: 'a',
        seams: { afterMark: async () => void others.push(await new UploadCleanup(server.db, server.store, { policy: policy(), clock, holder: 'b' }).runOnce()) },
      }).runOnce();
      expect(a.ran).toBe(true);
      expect(a.unused).toBeGreaterThanOrEqual(1);
      expect(others.length).toBeGreaterThanOrEqual(1);
      expect(others.map((r) => r.ran)).toEqual(others.map(() => false));
      expect((await rowOf(key)).state).toBe('deleted');

      // A runner that died holding it: nobody else runs until it lapses.
      await server.db.insertInto('leases').values({ name: 'upload-cleanup', holder: 'dead', expires_at: new Date(clock.now().getTime() + 60_000).toISOString() }).execute();
      expect((await new UploadCleanup(server.db, server.store, { policy: policy(), clock, holder: 'c' }).runOnce()).ran).toBe(false);
      clock.advance(61);
      expect((await new UploadCleanup(server.db, server.store, { policy: policy(), clock, holder: 'c' }).runOnce()).ran).toBe(true);
      expect(await server.db.selectFrom('leases').selectAll().execute()).toEqual([]);
    });

    it('a multipart upload stored `rejected` as expired by an older version still answers `expired`', async () => {
      const { s3_key } = await presignAndPut(server, apiKey, 'video/mp4', null);
      await server.db.updateTable('uploads').set({ state: 'rejected', reason: MULTIPART_EXPIRED_REASON, multipart_upload_id: 'old-upload' }).where('s3_key', '=', s3_key).execute();
      const body = await statusOf(s3_key);
      expect(body).toMatchObject({ state: 'expired' });
      expect(body.reason).toBeUndefined();
    });
  });
});
