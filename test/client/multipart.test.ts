import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyframeClient as BrowserKeyframeClient, KeyframeError, type MultipartResume } from '../../src/client/index.js';
import { KeyframeClient } from '../../src/client/node.js';
import { padMp4, readFixture } from '../helpers/media-fixtures.js';
import { rgwForTests, startServerOn } from '../helpers/rgw.js';
import type { TestServer } from '../helpers/server.js';
import { watchingFetch } from './support.js';

// The typed client's multipart uploads through Keyframe's Companion-compatible routes, on both
// stores: a ~12 MiB MP4 (three parts of the server's 5 MiB minimum) with a small threshold.

const rgw = await rgwForTests('client multipart suite');

const MiB = 1024 * 1024;
const SIZE = 12 * MiB + 4321;
const THRESHOLD = 1 * MiB;

let scratch: string;
let videoPath: string;
let video: Buffer;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'keyframe-client-mp-'));
  video = padMp4(readFixture('sample.mp4'), SIZE);
  videoPath = path.join(scratch, 'clip.mp4');
  await writeFile(videoPath, video);
});

afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** Progress reports: never beyond the total, ending at it. */
function progressRecorder() {
  const seen: { loaded: number; total: number }[] = [];
  return { seen, onProgress: (p: { loaded: number; total: number }) => seen.push(p) };
}

describe.each(['disk', 's3'] as const)('KeyframeClient multipart uploads: %s', (storeKind) => {
  describe.skipIf(storeKind === 's3' && rgw.skip)(`${storeKind} store`, () => {
    let server: TestServer;
    let apiKey: string;

    beforeAll(async () => {
      server = await startServerOn(storeKind, rgw, 'client-mp');
      apiKey = (await server.createKey('alice')).key;
    }, 60_000);

    afterAll(async () => {
      // A PUT this suite cuts mid-body can leave its socket open without the rest of the body: to the
      // server a request still in flight, which an orderly close waits for (up to the 2-minute
      // connection timeout). Every test is over here: nothing in flight is lost.
      server?.app.server.closeAllConnections();
      await server?.stop();
    }, 60_000);

    const nodeClient = (fetchImpl: typeof fetch, extra: { partConcurrency?: number } = {}) =>
      new KeyframeClient({ baseUrl: server.url, apiKey, fetch: fetchImpl, multipartThreshold: THRESHOLD, ...extra });

    it('a file path goes up in the 3 planned parts (size declared), verified, progress reaching the total', async () => {
      const { fetch, log } = watchingFetch();
      const progress = progressRecorder();
      const uploaded = await nodeClient(fetch).uploadReference(videoPath, { fileName: 'clip.mp4', onProgress: progress.onProgress });
      expect(log.createBodies).toEqual([{ type: 'video/mp4', filename: 'clip.mp4', size: SIZE }]);
      expect(log.created).toEqual([expect.objectContaining({ key: uploaded.s3_key, part_size: 5 * MiB, part_count: 3 })]);
      expect([...log.partPuts.entries()].sort()).toEqual([[1, 1], [2, 1], [3, 1]]);
      expect(log.singlePuts).toBe(0);
      expect(uploaded).toMatchObject({ content_type: 'video/mp4', size: SIZE });
      expect(uploaded.status).toMatchObject({ state: 'verified', size: SIZE, media: expect.objectContaining({ video_codec: 'h264' }) });
      expect(progress.seen.every((p) => p.total === SIZE && p.loaded >= 0 && p.loaded <= SIZE)).toBe(true);
      expect(progress.seen.at(-1)).toEqual({ loaded: SIZE, total: SIZE });
    });

    it('a stream of unknown length past the threshold goes up in parts without a declared size, verified', async () => {
      const { fetch, log } = watchingFetch();
      const progress = progressRecorder();
      const uploaded = await nodeClient(fetch).uploadReference(createReadStream(videoPath, { highWaterMark: 256 * 1024 }), {
        onProgress: progress.onProgress,
      });
      expect(log.createBodies).toEqual([{ type: 'video/mp4' }]);
      expect(log.created[0]).not.toHaveProperty('part_count');
      expect([...log.partPuts.keys()].sort()).toEqual([1, 2, 3]);
      expect(uploaded.status).toMatchObject({ state: 'verified', size: SIZE });
      expect(progress.seen.every((p) => p.loaded <= p.total)).toBe(true);
      expect(progress.seen.at(-1)).toEqual({ loaded: SIZE, total: SIZE });
    });

    it('a Blob through the browser entry goes up in parts too, verified', async () => {
      const { fetch, log } = watchingFetch();
      const progress = progressRecorder();
      const client = new BrowserKeyframeClient({ baseUrl: server.url, apiKey, fetch, multipartThreshold: THRESHOLD, partConcurrency: 2 });
      const uploaded = await client.uploadReference(new Blob([new Uint8Array(video)]), { onProgress: progress.onProgress });
      expect([...log.partPuts.keys()].sort()).toEqual([1, 2, 3]);
      expect(uploaded.status).toMatchObject({ state: 'verified', size: SIZE });
      expect(progress.seen.at(-1)).toEqual({ loaded: SIZE, total: SIZE });
    });

    it('a part whose connection is cut mid-body is signed again and retried; the upload completes', async () => {
      const { fetch, log } = watchingFetch({ cutFirstPutOfPart: 2 });
      const progress = progressRecorder();
      const uploaded = await nodeClient(fetch).uploadReference(videoPath, { onProgress: progress.onProgress });
      // No fileName given: the path's own name is sent.
      expect(log.createBodies).toEqual([{ type: 'video/mp4', filename: 'clip.mp4', size: SIZE }]);
      expect(log.partPuts.get(2)).toBe(2);
      expect(log.partSigns.get(2)).toBe(2);
      expect(log.partPuts.get(1)).toBe(1);
      expect(log.partPuts.get(3)).toBe(1);
      expect(uploaded.status).toMatchObject({ state: 'verified', size: SIZE });
      // The cut attempt's bytes were taken back, so the total is reached exactly, never passed.
      expect(progress.seen.every((p) => p.loaded <= SIZE)).toBe(true);
      expect(progress.seen.at(-1)).toEqual({ loaded: SIZE, total: SIZE });
    });

    it('with retries: 0 the cut part fails the upload, which is aborted on the server', async () => {
      const { fetch, log } = watchingFetch({ cutFirstPutOfPart: 1 });
      const client = new KeyframeClient({ baseUrl: server.url, apiKey, fetch, multipartThreshold: THRESHOLD, retries: 0 });
      const err = await client.uploadReference(videoPath).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyframeError);
      expect(err).toMatchObject({ error: 'network_error', status: 0 });
      const { uploadId, key } = log.created[0]!;
      const listed = await server.api('GET', `/api/s3/multipart/${encodeURIComponent(uploadId)}?key=${encodeURIComponent(key)}`, { key: apiKey });
      expect(listed.status).toBe(404);
    });

    it('with onMultipartCreated, a failed upload is left open; `resume` sends only the parts not listed, and completes', async () => {
      const first = watchingFetch({ cutFirstPutOfPart: 3 });
      const told: MultipartResume[] = [];
      const client = new KeyframeClient({ baseUrl: server.url, apiKey, fetch: first.fetch, multipartThreshold: THRESHOLD, retries: 0, partConcurrency: 1 });
      const err = await client.uploadReference(videoPath, { onMultipartCreated: (r) => told.push(r) }).catch((e: unknown) => e);
      expect(err).toMatchObject({ error: 'network_error' });
      expect(told).toEqual([{ key: first.log.created[0]!.key, uploadId: first.log.created[0]!.uploadId, partSize: 5 * MiB }]);

      const second = watchingFetch();
      const progress = progressRecorder();
      const uploaded = await nodeClient(second.fetch).uploadReference(videoPath, { resume: told[0]!, onProgress: progress.onProgress });
      expect(second.log.created).toEqual([]);
      expect([...second.log.partPuts.keys()]).toEqual([3]);
      expect(uploaded).toMatchObject({ s3_key: told[0]!.key, status: { state: 'verified', size: SIZE } });
      // The listed parts count as sent: the total is reached exactly.
      expect(progress.seen.at(-1)).toEqual({ loaded: SIZE, total: SIZE });
    });

    it('`resume` of an upload the server no longer knows starts a new one', async () => {
      const { fetch, log } = watchingFetch();
      const gone: MultipartResume = { key: 'users/alice/user-uploads/batch_x/file_gone.mp4', uploadId: 'no-such-upload', partSize: 5 * MiB };
      const uploaded = await nodeClient(fetch).uploadReference(videoPath, { resume: gone });
      expect(log.created).toHaveLength(1);
      expect(uploaded.s3_key).toBe(log.created[0]!.key);
      expect(uploaded.status).toMatchObject({ state: 'verified', size: SIZE });
    });

    it("a stream that fails past the threshold rejects with the stream's error, and the upload is aborted on the server", async () => {
      const { fetch, log } = watchingFetch();
      const failure = new Error('the source disk went away');
      async function* failing() {
        yield video.subarray(0, 7 * MiB);
        throw failure;
      }
      const err = await nodeClient(fetch).uploadReference(Readable.from(failing())).catch((e: unknown) => e);
      expect(err).toBe(failure);
      const { uploadId, key } = log.created[0]!;
      const listed = await server.api('GET', `/api/s3/multipart/${encodeURIComponent(uploadId)}?key=${encodeURIComponent(key)}`, { key: apiKey });
      expect(listed.status).toBe(404);
    });

    it('the signal aborts the upload: rejected with KeyframeError(aborted), and the multipart upload is aborted on the server', async () => {
      const { fetch, log } = watchingFetch();
      const controller = new AbortController();
      const client = nodeClient(fetch, { partConcurrency: 1 });
      const err = await client
        .uploadReference(videoPath, {
          signal: controller.signal,
          // Mid-way through part 1 of 3: nothing can have been completed.
          onProgress: ({ loaded }) => loaded >= MiB && controller.abort(),
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KeyframeError);
      expect(err).toMatchObject({ error: 'aborted', status: 0 });
      expect(log.created).toHaveLength(1);
      const { uploadId, key } = log.created[0]!;
      const status = await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(key)}`, { key: apiKey });
      expect(status.status).toBe(200);
      expect(status.body.state).not.toBe('uploading');
      expect(status.body.state).toBe('rejected');
      const listed = await server.api('GET', `/api/s3/multipart/${encodeURIComponent(uploadId)}?key=${encodeURIComponent(key)}`, { key: apiKey });
      expect(listed.status).toBe(404);
      expect(log.partPuts.get(2)).toBeUndefined();
    });
  });
});
