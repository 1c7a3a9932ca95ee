import { createReadStream } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyframeClient as BrowserKeyframeClient, KeyframeError } from '../../src/client/index.js';
import { KeyframeClient, type NodeUploadInput } from '../../src/client/node.js';
import { MEDIA_DIR, padMp4, readFixture } from '../helpers/media-fixtures.js';
import { rgwForTests, startServerOn } from '../helpers/rgw.js';
import type { TestServer } from '../helpers/server.js';
import { watchingFetch } from './support.js';

// The typed client's single-PUT uploads (src/client/), on real servers on both stores: each input
// kind of each entry, the type detected from the bytes, then the one status call that verifies.

const rgw = await rgwForTests('client upload suite');

const MEDIA = [
  { file: 'sample.png', type: 'image/png', codec: { video_codec: 'png' } },
  { file: 'sample.mp3', type: 'audio/mpeg', codec: { audio_codec: 'mp3' } },
  { file: 'sample.mp4', type: 'video/mp4', codec: { video_codec: 'h264' } },
] as const;

/** Each way a caller hands over the bytes: the Node entry's path, Buffer and stream; the browser entry's Blob. */
const INPUTS: { kind: string; browser: boolean; input: (file: string) => NodeUploadInput }[] = [
  { kind: 'file path', browser: false, input: (file) => path.join(MEDIA_DIR, file) },
  { kind: 'Buffer', browser: false, input: (file) => readFixture(file) },
  { kind: 'Readable stream', browser: false, input: (file) => createReadStream(path.join(MEDIA_DIR, file)) },
  { kind: 'Blob (browser entry)', browser: true, input: (file) => new Blob([new Uint8Array(readFixture(file))]) },
];

describe.each(['disk', 's3'] as const)('KeyframeClient single-PUT uploads: %s', (storeKind) => {
  describe.skipIf(storeKind === 's3' && rgw.skip)(`${storeKind} store`, () => {
    let server: TestServer;
    let apiKey: string;

    beforeAll(async () => {
      server = await startServerOn(storeKind, rgw, 'client-up');
      apiKey = (await server.createKey('alice')).key;
    }, 60_000);

    afterAll(async () => {
      // A PUT this suite cuts mid-body can leave its socket open without the rest of the body: to the
      // server a request still in flight, which an orderly close waits for (up to the 2-minute
      // connection timeout). Every test is over here: nothing in flight is lost.
      server?.app.server.closeAllConnections();
      await server?.stop();
    }, 60_000);

    const client = (browser = false) => new (browser ? BrowserKeyframeClient : KeyframeClient)({ baseUrl: server.url, apiKey });

    describe.each(INPUTS)('from a $kind', ({ browser, input }) => {
      it.each(MEDIA)('$file is detected as $type, uploaded, and verified', async ({ file, type, codec }) => {
        const progress: { loaded: number; total: number }[] = [];
        const size = readFixture(file).length;
        const uploaded = await client(browser).uploadReference(input(file) as Blob, { onProgress: (p) => progress.push(p) });
        expect(uploaded).toMatchObject({ s3_key: expect.stringMatching(/^users\/alice\/user-uploads\//), content_type: type, size });
        expect(uploaded.status).toMatchObject({ s3_key: uploaded.s3_key, state: 'verified', content_type: type, size, sniffed_type: expect.any(String) });
        expect(uploaded.status.media).toMatchObject(codec);
        expect(progress.at(-1)).toEqual({ loaded: size, total: size });
        // The status the client handed back is the server's.
        const { s3_key, state, content_type, media } = uploaded.status;
        expect(await client().uploadStatus(uploaded.s3_key)).toMatchObject({ s3_key, state, content_type, size, media });
      });
    });

    it('a single PUT whose connection is cut mid-body is retried to the same URL, and verified', async () => {
      const video = padMp4(readFixture('sample.mp4'), 3 * 1024 * 1024);
      const { fetch, log } = watchingFetch({ cutFirstSinglePut: true, cutAfterBytes: 1024 * 1024 });
      const progress: { loaded: number; total: number }[] = [];
      const uploaded = await new KeyframeClient({ baseUrl: server.url, apiKey, fetch }).uploadReference(video, { onProgress: (p) => progress.push(p) });
      expect(log.singlePuts).toBe(2);
      expect(log.created).toEqual([]);
      expect(uploaded.status).toMatchObject({ state: 'verified', size: video.length });
      expect(progress.every((p) => p.loaded <= video.length)).toBe(true);
      expect(progress.at(-1)).toEqual({ loaded: video.length, total: video.length });
    });

    it('a wrong declared type is uploaded and comes back rejected, not thrown', async () => {
      const uploaded = await client().uploadReference(readFixture('sample.mp3'), { contentType: 'image/png' });
      expect(uploaded.content_type).toBe('image/png');
      expect(uploaded.status.state).toBe('rejected');
      expect(uploaded.status.reason).toBe('the content is audio/mpeg, not the declared image/png');
    });

    it('a type outside the allow-list is a KeyframeError from presign', async () => {
      const err = await client()
        .uploadReference(new Uint8Array([1, 2, 3]), { contentType: 'text/html' })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyframeError);
      expect(err).toMatchObject({ status: 400, error: 'validation_error', message: expect.stringMatching(/contentType/) });
    });

    it('bytes no type is recognised in are a KeyframeError before any request', async () => {
      const err = await client().uploadReference(readFixture('random.bin')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyframeError);
      expect(err).toMatchObject({ status: 0, error: 'unknown_content_type' });
    });

    it("the store's refusal of the PUT (a tampered signature) is KeyframeError('upload_failed') with its status", async () => {
      const tampering: typeof fetch = (url, init) => {
        const target = String(url);
        if (init?.method === 'PUT') {
          const u = new URL(target);
          const signature = u.searchParams.get('X-Amz-Signature') ?? '';
          u.searchParams.set('X-Amz-Signature', signature.replace(/.$/, (c) => (c === '0' ? '1' : '0')));
          return fetch(u, init);
        }
        return fetch(url, init);
      };
      const tampered = new KeyframeClient({ baseUrl: server.url, apiKey, fetch: tampering });
      const err = await tampered.uploadReference(readFixture('sample.png')).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyframeError);
      expect(err).toMatchObject({ error: 'upload_failed', status: 403, message: expect.stringMatching(/SignatureDoesNotMatch|AccessDenied/) });
    });
  });
});
