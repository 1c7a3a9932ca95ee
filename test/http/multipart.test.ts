import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BYTES } from '../../src/domain/media-types.js';
import { waitForGeneration } from '../helpers/generations.js';
import { padMp4, readFixture } from '../helpers/media-fixtures.js';
import { rgwForTests, startServerOn } from '../helpers/rgw.js';
import type { TestServer } from '../helpers/server.js';

// Multipart uploads on Uppy Companion's S3 routes (issue 13), over real HTTP, on both stores:
// the disk store and S3 (Ceph RGW). Parts go to the store with fetch, as a browser's do.

const rgw = await rgwForTests('multipart HTTP suite');

const MiB = 1024 * 1024;

const paddedMp4 = (size: number): Buffer => padMp4(readFixture('sample.mp4'), size);

/** PUTs one part as a browser does (a Blob slice: no Content-Type). */
async function putPart(url: string, bytes: Buffer): Promise<{ status: number; etag: string | null; text: string }> {
  const res = await fetch(url, { method: 'PUT', body: new Uint8Array(bytes), signal: AbortSignal.timeout(60_000) });
  return { status: res.status, etag: res.headers.get('etag'), text: await res.text() };
}

describe.each(['disk', 's3'] as const)('multipart uploads over HTTP: %s', (storeKind) => {
  describe.skipIf(storeKind === 's3' && rgw.skip)(`${storeKind} store`, () => {
    let server: TestServer;
    let alice: string;
    let bob: string;
    let carol: string;

    beforeAll(async () => {
      // 300 MiB a user: one multipart video without a declared size reserves 200 MiB (its max_bytes).
      server = await startServerOn(storeKind, rgw, 'mp-http', { KEYFRAME_MAX_STORED_BYTES: String(300 * MiB) });
      expect(server.store.kind).toBe(storeKind);
      alice = (await server.createKey('alice')).key;
      bob = (await server.createKey('bob')).key;
      carol = (await server.createKey('carol')).key;
    }, 60_000);

    afterAll(async () => {
      await server?.stop();
    }, 60_000);

    const q = (key: string) => `key=${encodeURIComponent(key)}`;
    const mp = (uploadId: string) => `/api/s3/multipart/${encodeURIComponent(uploadId)}`;
    const statusOf = (key: string, apiKey = alice) => server.api('GET', `/api/uploads/status?${q(key)}`, { key: apiKey });

    it('create → sign 3 parts (one, then a batch) → PUT → list → complete → verified → a generation uses it', async () => {
      const file = paddedMp4(12 * MiB + 4321);
      const created = await server.api('POST', '/api/s3/multipart', {
        key: alice,
        body: { filename: 'clip.mp4', type: 'video/mp4', metadata: { name: 'clip.mp4' }, size: file.length },
      });
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      const { uploadId, key } = created.body;
      expect(created.body).toEqual({ uploadId: expect.any(String), key: expect.stringMatching(/^users\/alice\/user-uploads\/batch_.+\.mp4$/), max_bytes: MAX_BYTES.video, part_size: 5 * MiB, part_count: 3 });
      expect((await statusOf(key)).body).toMatchObject({ s3_key: key, state: 'uploading', size: null });

      const one = await server.api('GET', `${mp(uploadId)}/1?${q(key)}`, { key: alice });
      expect(one.status, JSON.stringify(one.body)).toBe(200);
      expect(one.body).toEqual({ url: expect.stringMatching(/^http/), expires: 900 });
      const batch = await server.api('GET', `${mp(uploadId)}/batch?${q(key)}&partNumbers=2,3`, { key: alice });
      expect(batch.status, JSON.stringify(batch.body)).toBe(200);
      expect(Object.keys(batch.body.presignedUrls).sort()).toEqual(['2', '3']);
      // Outside the plan of the declared size: refused before anything is signed.
      const outside = await server.api('GET', `${mp(uploadId)}/4?${q(key)}`, { key: alice });
      expect(outside.status).toBe(400);
      expect(outside.body).toMatchObject({ error: 'validation_error', message: expect.stringMatching(/outside the plan/) });

      const urls = [one.body.url, batch.body.presignedUrls['2'], batch.body.presignedUrls['3']];
      const slices = [file.subarray(0, 5 * MiB), file.subarray(5 * MiB, 10 * MiB), file.subarray(10 * MiB)];
      const puts = await Promise.all(urls.map((url, i) => putPart(url, slices[i]!)));
      for (const put of puts) expect(put.status, put.text).toBe(200);
      const etags = puts.map((p) => p.etag!);

      const listed = await server.api('GET', `${mp(uploadId)}?${q(key)}`, { key: alice });
      expect(listed.status).toBe(200);
      expect(listed.body.map((p: { PartNumber: number; Size: number }) => [p.PartNumber, p.Size])).toEqual([
        [1, 5 * MiB],
        [2, 5 * MiB],
        [3, file.length - 10 * MiB],
      ]);
      expect(listed.body.map((p: { ETag: string }) => p.ETag.replaceAll('"', ''))).toEqual(etags.map((e) => e.replaceAll('"', '')));

      // A foreign ETag, or a missing part, is refused and the upload stays open.
      const badEtag = await server.api('POST', `${mp(uploadId)}/complete?${q(key)}`, {
        key: alice,
        body: { parts: [{ PartNumber: 1, ETag: etags[0] }, { PartNumber: 2, ETag: '"0123456789abcdef0123456789abcdef"' }, { PartNumber: 3, ETag: etags[2] }] },
      });
      expect(badEtag.status).toBe(400);
      expect(badEtag.body).toMatchObject({ error: 'validation_error', message: expect.stringMatching(/^InvalidPart/) });
      const missing = await server.api('POST', `${mp(uploadId)}/complete?${q(key)}`, {
        key: alice,
        body: { parts: [{ PartNumber: 1, ETag: etags[0] }, { PartNumber: 2, ETag: etags[1] }] },
      });
      expect(missing.status).toBe(400);
      expect((await statusOf(key)).body.state).toBe('uploading');
      const early = await server.api('POST', '/api/generations', { key: alice, body: { prompt: 'p', modelName: 'keyframe-local', sourceVideoKey: key } });
      expect(early.status).toBe(400);
      expect(early.body.message).toBe('sourceVideoKey: the multipart upload is not complete yet (state uploading); complete it first');

      const parts = etags.map((ETag, i) => ({ PartNumber: i + 1, ETag }));
      const completed = await server.api('POST', `${mp(uploadId)}/complete?${q(key)}`, { key: alice, body: { parts } });
      expect(completed.status, JSON.stringify(completed.body)).toBe(200);
      expect(completed.body).toEqual({ location: `/api/uploads/status?${q(key)}`, key });
      // Retried after a lost answer: the same answer.
      expect((await server.api('POST', `${mp(uploadId)}/complete?${q(key)}`, { key: alice, body: { parts } })).body).toEqual(completed.body);

      const verified = await statusOf(key);
      expect(verified.body).toMatchObject({ state: 'verified', size: file.length, content_type: 'video/mp4', sniffed_type: 'video/mp4', media: { width: 32, height: 32, video_codec: 'h264' } });
      expect((await server.store.head(key))?.size).toBe(file.length);
      // Completed: no more parts, no list.
      expect((await server.api('GET', `${mp(uploadId)}?${q(key)}`, { key: alice })).status).toBe(404);

      const generation = await server.api('POST', '/api/generations', {
        key: alice,
        body: { prompt: 'from parts', modelName: 'keyframe-local', aspectRatio: '1:1', resolution: '480p', duration: '1s', sourceVideoKey: key },
      });
      expect(generation.status, JSON.stringify(generation.body)).toBe(200);
      const done = await waitForGeneration(server.api, alice, generation.body.generations[0].generation_id);
      expect(done.body).toMatchObject({ status: 'completed', error: null });
    }, 120_000);

    it('with a declared size, a part of another size is refused by the store itself', async () => {
      const size = 11 * MiB;
      const created = await server.api('POST', '/api/s3/multipart', { key: alice, body: { filename: 'x.mp4', type: 'video/mp4', contentLength: size } });
      expect(created.status).toBe(200);
      const { uploadId, key } = created.body;
      const signed = await server.api('GET', `${mp(uploadId)}/1?${q(key)}`, { key: alice });
      expect(signed.status).toBe(200);
      for (const wrong of [5 * MiB - 1, 5 * MiB + 1]) {
        const put = await putPart(signed.body.url, randomBytes(wrong));
        expect(put.status, put.text).toBeGreaterThanOrEqual(400);
        expect(put.status).toBeLessThan(500);
      }
      expect((await server.api('GET', `${mp(uploadId)}?${q(key)}`, { key: alice })).body).toEqual([]);
      expect((await server.api('DELETE', `${mp(uploadId)}?${q(key)}`, { key: alice })).status).toBe(200);
    }, 60_000);

    it('refuses a declared size over max_bytes at once, and a type off the allow-list', async () => {
      const over = await server.api('POST', '/api/s3/multipart', { key: alice, body: { type: 'image/png', size: MAX_BYTES.image + 1 } });
      expect(over.status).toBe(400);
      expect(over.body).toEqual({ error: 'validation_error', message: `size must be from 1 to ${MAX_BYTES.image} bytes for image uploads` });
      const html = await server.api('POST', '/api/s3/multipart', { key: alice, body: { type: 'text/html', filename: 'a.html' } });
      expect(html.status).toBe(400);
      expect(html.body.error).toBe('validation_error');
      const anonymous = await server.api('POST', '/api/s3/multipart', { body: { type: 'image/png' } });
      expect(anonymous.status).toBe(401);
    });

    it('parts adding up to more than max_bytes (no declared size): complete refused, upload aborted, record rejected, no object', async () => {
      const created = await server.api('POST', '/api/s3/multipart', { key: alice, body: { filename: 'big.png', type: 'image/png' } });
      expect(created.status).toBe(200);
      const { uploadId, key } = created.body;
      expect(created.body.part_size).toBeUndefined();
      // 20 MiB in parts of at least 5 MiB but the last: at most 4 parts, so part 5 is never signed.
      const fifth = await server.api('GET', `${mp(uploadId)}/5?${q(key)}`, { key: alice });
      expect(fifth.status).toBe(400);
      expect(fifth.body.message).toMatch(/^part 5 is past the last possible part: .* at most 4 parts/);
      const signed = await server.api('GET', `${mp(uploadId)}/batch?${q(key)}&partNumbers=1,2,3,4`, { key: alice });
      expect(signed.status).toBe(200);
      const part = randomBytes(5 * MiB);
      const last = randomBytes(6 * MiB);
      const puts = await Promise.all([1, 2, 3, 4].map((n) => putPart(signed.body.presignedUrls[String(n)], n === 4 ? last : part)));
      for (const put of puts) expect(put.status, put.text).toBe(200);

      const refused = await server.api('POST', `${mp(uploadId)}/complete?${q(key)}`, {
        key: alice,
        body: { parts: puts.map((p, i) => ({ PartNumber: i + 1, ETag: p.etag })) },
      });
      expect(refused.status).toBe(400);
      expect(refused.body).toEqual({
        error: 'validation_error',
        message: `Upload refused: the parts add up to ${21 * MiB} bytes, over the ${MAX_BYTES.image}-byte limit; the multipart upload was aborted`,
      });
      expect((await statusOf(key)).body).toMatchObject({ state: 'rejected', reason: `the parts add up to ${21 * MiB} bytes, over the ${MAX_BYTES.image}-byte limit` });
      expect(await server.store.head(key)).toBeNull();
      expect(await server.store.listParts(key, uploadId)).toBe('missing');
      expect((await server.api('GET', `${mp(uploadId)}?${q(key)}`, { key: alice })).status).toBe(404);
      expect((await server.api('POST', `${mp(uploadId)}/complete?${q(key)}`, { key: alice, body: { parts: [{ PartNumber: 1, ETag: puts[0]!.etag }] } })).status).toBe(404);
    }, 90_000);

    it("another user's key or upload id is a 404, like a missing one", async () => {
      const created = await server.api('POST', '/api/s3/multipart', { key: alice, body: { type: 'audio/mpeg', size: 1000 } });
      const { uploadId, key } = created.body;
      const notFound = { error: 'not_found', message: 'Multipart upload not found' };
      const attempts: [string, string, unknown?][] = [
        ['GET', `${mp(uploadId)}?${q(key)}`],
        ['GET', `${mp(uploadId)}/1?${q(key)}`],
        ['GET', `${mp(uploadId)}/batch?${q(key)}&partNumbers=1`],
        ['POST', `${mp(uploadId)}/complete?${q(key)}`, { parts: [{ PartNumber: 1, ETag: 'x' }] }],
        ['DELETE', `${mp(uploadId)}?${q(key)}`],
      ];
      for (const [method, path, body] of attempts) {
        const res = await server.api(method, path, { key: bob, body });
        expect([method, path, res.status, res.body]).toEqual([method, path, 404, notFound]);
      }
      // Alice with a wrong id, or another key of hers, or a string that is no key.
      for (const path of [`${mp('nope')}?${q(key)}`, `${mp(uploadId)}?${q(key.replace(/file_[^.]+/, 'file_AAAAAAAAAAAAAAAAAAAAAA'))}`, `${mp(uploadId)}?key=..%2F..%2Fetc`]) {
        const res = await server.api('GET', path, { key: alice });
        expect([path, res.status, res.body]).toEqual([path, 404, notFound]);
      }
      // Still Alice's, still open.
      expect((await server.api('GET', `${mp(uploadId)}?${q(key)}`, { key: alice })).body).toEqual([]);
      expect((await server.api('DELETE', `${mp(uploadId)}?${q(key)}`, { key: alice })).status).toBe(200);
    });

    it('abort: {} , the parts are gone, the list is a 404, and the quota is freed', async () => {
      const first = await server.api('POST', '/api/s3/multipart', { key: carol, body: { filename: 'a.mp4', type: 'video/mp4' } });
      expect(first.status).toBe(200);
      const { uploadId, key } = first.body;
      const signed = await server.api('GET', `${mp(uploadId)}/1?${q(key)}`, { key: carol });
      expect((await putPart(signed.body.url, randomBytes(MiB))).status).toBe(200);
      // A second one without a size would reserve another 200 MiB: over carol's 300 MiB.
      const second = await server.api('POST', '/api/s3/multipart', { key: carol, body: { type: 'video/mp4' } });
      expect(second.status).toBe(429);
      expect(second.body.error).toBe('rate_limited');

      const aborted = await server.api('DELETE', `${mp(uploadId)}?${q(key)}`, { key: carol });
      expect(aborted.status).toBe(200);
      expect(aborted.body).toEqual({});
      expect((await server.api('GET', `${mp(uploadId)}?${q(key)}`, { key: carol })).status).toBe(404);
      expect(await server.store.listParts(key, uploadId)).toBe('missing');
      expect((await statusOf(key, carol)).body).toMatchObject({ state: 'rejected', reason: 'the multipart upload was aborted' });
      // Aborting again is harmless.
      expect((await server.api('DELETE', `${mp(uploadId)}?${q(key)}`, { key: carol })).status).toBe(200);

      const third = await server.api('POST', '/api/s3/multipart', { key: carol, body: { type: 'video/mp4' } });
      expect(third.status, JSON.stringify(third.body)).toBe(200);
      expect((await server.api('DELETE', `${mp(third.body.uploadId)}?${q(third.body.key)}`, { key: carol })).status).toBe(200);
    });

    it('past its lifetime, an uncompleted upload is `expired` and takes no more parts', async () => {
      const created = await server.api('POST', '/api/s3/multipart', { key: alice, body: { type: 'audio/mpeg', size: 2000 } });
      const { uploadId, key } = created.body;
      expect((await statusOf(key)).body.state).toBe('uploading');
      await server.db.updateTable('uploads').set({ expires_at: new Date(Date.now() - 1000).toISOString() }).where('s3_key', '=', key).execute();
      expect((await statusOf(key)).body).toMatchObject({ state: 'expired', size: null });
      expect((await server.api('GET', `${mp(uploadId)}/1?${q(key)}`, { key: alice })).status).toBe(404);
      expect((await server.api('GET', `${mp(uploadId)}?${q(key)}`, { key: alice })).status).toBe(404);
      expect(await server.store.listParts(key, uploadId)).toEqual([]);

      // Alice's next create aborts it: the parts are gone, the record reserves nothing, the status stays `expired`.
      const next = await server.api('POST', '/api/s3/multipart', { key: alice, body: { type: 'audio/mpeg', size: 2000 } });
      expect(next.status).toBe(200);
      expect(await server.store.listParts(key, uploadId)).toBe('missing');
      const row = await server.db.selectFrom('uploads').select(['state', 'reason']).where('s3_key', '=', key).executeTakeFirstOrThrow();
      expect(row).toEqual({ state: 'expired', reason: null });
      expect((await statusOf(key)).body).toEqual(expect.objectContaining({ state: 'expired' }));
      expect((await statusOf(key)).body.reason).toBeUndefined();
      expect((await server.api('DELETE', `${mp(next.body.uploadId)}?${q(next.body.key)}`, { key: alice })).status).toBe(200);
    });

    it("GET /api/s3/params: Uppy's single PUT, a presign", async () => {
      const png = readFixture('sample.png');
      const params = await server.api('GET', '/api/s3/params?filename=a.png&type=image%2Fpng&metadata%5Bname%5D=a.png', { key: alice });
      expect(params.status, JSON.stringify(params.body)).toBe(200);
      expect(params.body).toEqual({
        method: 'PUT',
        url: expect.stringMatching(/^http/),
        fields: {},
        headers: { 'content-type': 'image/png' },
        key: expect.stringMatching(/^users\/alice\/user-uploads\/.+\.png$/),
        max_bytes: MAX_BYTES.image,
        expires: 900,
      });
      const put = await fetch(params.body.url, { method: params.body.method, headers: params.body.headers, body: new Uint8Array(png) });
      expect(put.status).toBe(200);
      expect((await statusOf(params.body.key)).body).toMatchObject({ state: 'verified', size: png.length });
      expect((await server.api('GET', '/api/s3/params?type=text%2Fhtml', { key: alice })).status).toBe(400);
      for (const [method, path, allow] of [
        ['POST', '/api/s3/params?type=image%2Fpng', 'GET'],
        ['PUT', '/api/s3/multipart', 'POST'],
        ['PATCH', '/api/s3/multipart/u1?key=k', 'GET, DELETE'],
        ['GET', '/api/s3/multipart/u1/complete?key=k', 'POST'],
        ['POST', '/api/s3/multipart/u1/7?key=k', 'GET'],
      ] as const) {
        const res = await server.api(method, path, { key: alice, body: method === 'GET' ? undefined : {} });
        expect([method, path, res.status, res.body.error, res.headers.get('allow')]).toEqual([method, path, 405, 'method_not_allowed', allow]);
      }
    });
  });
});
