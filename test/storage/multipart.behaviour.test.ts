import { createHash, randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskStore, type SignedObjectRequest } from '../../src/storage/disk/disk-store.js';
import { StorageRefusal } from '../../src/storage/disk/storage-refusal.js';
import { MULTIPART_LIMITS, MultipartError, type MultipartErrorCode } from '../../src/storage/multipart.js';
import type { TestServer } from '../helpers/server.js';
import { rgwForTests, startServerOn } from '../helpers/rgw.js';

// The multipart part of the one behaviour suite (object-store.behaviour.test.ts has the rest),
// run against both stores behind a real server: the disk store (parts as files, assembled into
// place) and S3 (Ceph RGW). Parts go up with fetch to the presigned part URLs, as a browser's do.

const rgw = await rgwForTests('multipart behaviour suite');

const MiB = 1024 * 1024;

interface PartPut {
  status: number;
  etag: string | null;
  /** S3's error code from the XML body, when refused. */
  code: string | null;
}

/** PUTs one part the way a browser does (no Content-Type: a Blob slice has none). */
async function putPart(url: string, bytes: Buffer): Promise<PartPut> {
  const res = await fetch(url, { method: 'PUT', body: new Uint8Array(bytes), signal: AbortSignal.timeout(60_000) });
  const text = await res.text();
  return { status: res.status, etag: res.headers.get('etag'), code: /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? null };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/** The MultipartError code a promise rejects with. */
async function refusal(promise: Promise<unknown>): Promise<MultipartErrorCode | string> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof MultipartError) return err.code;
    return `not a MultipartError: ${String(err)}`;
  }
  return 'resolved';
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

describe.each(['disk', 's3'] as const)('multipart behaviour: %s', (storeKind) => {
  describe.skipIf(storeKind === 's3' && rgw.skip)(`${storeKind} store behind a real server`, () => {
    let server: TestServer;
    /** Uploads a test started, aborted at the end so that the S3 bucket can be removed. */
    const started: { key: string; uploadId: string }[] = [];

    beforeAll(async () => {
      server = await startServerOn(storeKind, rgw, 'multipart');
      expect(server.store.kind).toBe(storeKind);
    });

    afterAll(async () => {
      for (const { key, uploadId } of started) await server?.store.abortMultipart(key, uploadId);
      await server?.stop();
    });

    const newKey = () => `users/alice/user-uploads/${randomBytes(8).toString('hex')}/video.mp4`;

    async function create(key: string): Promise<string> {
      const { uploadId } = await server.store.createMultipart({ key, contentType: 'video/mp4' });
      expect(uploadId).toEqual(expect.any(String));
      started.push({ key, uploadId });
      return uploadId;
    }

    const presignPart = (key: string, uploadId: string, partNumber: number, contentLength: number | null = null) =>
      server.store.presignPart({ key, uploadId, partNumber, contentLength, expiresInSeconds: 300 });

    /** Uploads `bytes` as part `partNumber`; it must be accepted. */
    async function upload(key: string, uploadId: string, partNumber: number, bytes: Buffer, signLength = false): Promise<string> {
      const res = await putPart(await presignPart(key, uploadId, partNumber, signLength ? bytes.length : null), bytes);
      expect(res, JSON.stringify(res)).toMatchObject({ status: 200, code: null });
      expect(res.etag).toEqual(expect.any(String));
      return res.etag!;
    }

    it('three parts (5 MiB, 5 MiB, 1 KiB): listed with their sizes, completed into the exact bytes', async () => {
      const key = newKey();
      const uploadId = await create(key);
      const parts = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(1024)];
      const whole = Buffer.concat(parts);
      expect(await server.store.listParts(key, uploadId)).toEqual([]);

      // Out of order on purpose: the listing is by part number whatever the arrival order.
      const etags: string[] = [];
      etags[2] = await upload(key, uploadId, 3, parts[2]!, true);
      etags[0] = await upload(key, uploadId, 1, parts[0]!);
      etags[1] = await upload(key, uploadId, 2, parts[1]!, true);
      expect(await server.store.head(key)).toBeNull();

      expect(await server.store.listParts(key, uploadId)).toEqual([
        { partNumber: 1, size: 5 * MiB, etag: etags[0] },
        { partNumber: 2, size: 5 * MiB, etag: etags[1] },
        { partNumber: 3, size: 1024, etag: etags[2] },
      ]);
      // The upload belongs to its key.
      expect(await server.store.listParts(newKey(), uploadId)).toBe('missing');

      const info = await server.store.completeMultipart(
        key,
        uploadId,
        etags.map((etag, i) => ({ partNumber: i + 1, etag })),
      );
      expect(info).toMatchObject({ size: whole.length, contentType: 'video/mp4', etag: expect.any(String) });
      if (storeKind === 'disk') expect(info.sha256).toBe(sha256(whole));

      const head = await server.store.head(key);
      expect(head).toMatchObject({ size: whole.length, contentType: 'video/mp4', etag: info.etag });
      expect(await server.store.getRange(key, 0, 15)).toEqual(whole.subarray(0, 16));
      // Across the boundary of the first two parts.
      expect(await server.store.getRange(key, 5 * MiB - 8, 5 * MiB + 7)).toEqual(whole.subarray(5 * MiB - 8, 5 * MiB + 8));
      const body = await server.store.openVerified(key, head!.etag!);
      expect(body).not.toBeTypeOf('string');
      const read = await readAll(body as Readable);
      expect(read.length).toBe(whole.length);
      expect(sha256(read)).toBe(sha256(whole));

      // Completed: the upload is gone.
      expect(await server.store.listParts(key, uploadId)).toBe('missing');
      expect((await putPart(await presignPart(key, uploadId, 4), randomBytes(16))).status).toBe(404);
      await server.store.delete(key);
    });

    it('a part URL signed with contentLength refuses a part of any other size', async () => {
      const key = newKey();
      const uploadId = await create(key);
      const bytes = randomBytes(1024);
      const url = await presignPart(key, uploadId, 1, bytes.length);
      for (const other of [bytes.subarray(0, 1000), Buffer.concat([bytes, randomBytes(10)])]) {
        expect(await putPart(url, other)).toMatchObject({ status: 403, code: 'SignatureDoesNotMatch' });
      }
      expect(await server.store.listParts(key, uploadId)).toEqual([]);
      expect(await putPart(url, bytes)).toMatchObject({ status: 200, code: null });
      expect(await server.store.listParts(key, uploadId)).toEqual([{ partNumber: 1, size: 1024, etag: expect.any(String) }]);
      await server.store.abortMultipart(key, uploadId);
    });

    it('complete with an ETag that does not match, or a part never uploaded: InvalidPart, and no object', async () => {
      const key = newKey();
      const uploadId = await create(key);
      const etag1 = await upload(key, uploadId, 1, randomBytes(5 * MiB));
      const etag2 = await upload(key, uploadId, 2, randomBytes(100));
      const foreign = `"${'0123456789abcdef'.repeat(2)}"`;
      expect(await refusal(server.store.completeMultipart(key, uploadId, [{ partNumber: 1, etag: etag1 }, { partNumber: 2, etag: foreign }]))).toBe('InvalidPart');
      expect(await refusal(server.store.completeMultipart(key, uploadId, [{ partNumber: 1, etag: etag1 }, { partNumber: 3, etag: etag2 }]))).toBe('InvalidPart');
      expect(await server.store.head(key)).toBeNull();
      // Nothing was lost: the right list still completes.
      expect((await server.store.completeMultipart(key, uploadId, [{ partNumber: 1, etag: etag1 }, { partNumber: 2, etag: etag2 }])).size).toBe(5 * MiB + 100);
      await server.store.delete(key);
    });

    it('parts given out of order: InvalidPartOrder; a small part before the last: EntityTooSmall', async () => {
      const key = newKey();
      const uploadId = await create(key);
      const etag1 = await upload(key, uploadId, 1, randomBytes(5 * MiB));
      const etag2 = await upload(key, uploadId, 2, randomBytes(10));
      const etag3 = await upload(key, uploadId, 3, randomBytes(10));
      expect(await refusal(server.store.completeMultipart(key, uploadId, [{ partNumber: 2, etag: etag2 }, { partNumber: 1, etag: etag1 }]))).toBe('InvalidPartOrder');
      expect(
        await refusal(
          server.store.completeMultipart(key, uploadId, [
            { partNumber: 1, etag: etag1 },
            { partNumber: 2, etag: etag2 },
            { partNumber: 3, etag: etag3 },
          ]),
        ),
      ).toBe('EntityTooSmall');
      expect(await server.store.head(key)).toBeNull();
      expect(MULTIPART_LIMITS.minPartBytes).toBe(5 * MiB);
      await server.store.abortMultipart(key, uploadId);
    });

    it('a part PUT again replaces the first (S3 semantics)', async () => {
      const key = newKey();
      const uploadId = await create(key);
      const first = randomBytes(2048);
      const second = randomBytes(4096);
      const etagFirst = await upload(key, uploadId, 1, first);
      const etagSecond = await upload(key, uploadId, 1, second);
      expect(etagSecond).not.toBe(etagFirst);
      expect(await server.store.listParts(key, uploadId)).toEqual([{ partNumber: 1, size: 4096, etag: etagSecond }]);
      expect(await refusal(server.store.completeMultipart(key, uploadId, [{ partNumber: 1, etag: etagFirst }]))).toBe('InvalidPart');
      expect((await server.store.completeMultipart(key, uploadId, [{ partNumber: 1, etag: etagSecond }])).size).toBe(4096);
      expect(await server.store.getRange(key, 0, 8191)).toEqual(second);
      await server.store.delete(key);
    });

    it('abort: the upload and its parts are gone, no object, a part PUT refused; aborting again is no error', async () => {
      const key = newKey();
      const uploadId = await create(key);
      const etag = await upload(key, uploadId, 1, randomBytes(1024));
      const url = await presignPart(key, uploadId, 2);
      await server.store.abortMultipart(key, uploadId);
      expect(await server.store.listParts(key, uploadId)).toBe('missing');
      expect(await server.store.head(key)).toBeNull();
      expect(await putPart(url, randomBytes(16))).toMatchObject({ status: 404, code: 'NoSuchUpload' });
      expect(await refusal(server.store.completeMultipart(key, uploadId, [{ partNumber: 1, etag }]))).toBe('NoSuchUpload');
      await expect(server.store.abortMultipart(key, uploadId)).resolves.toBeUndefined();
      expect(await server.store.head(key)).toBeNull();
    });

    it('an unknown upload id: listParts "missing", complete NoSuchUpload, abort no error', async () => {
      const key = newKey();
      const unknown = storeKind === 'disk' ? randomBytes(24).toString('base64url') : `2~${randomBytes(16).toString('hex')}`;
      expect(await server.store.listParts(key, unknown)).toBe('missing');
      expect(await refusal(server.store.completeMultipart(key, unknown, [{ partNumber: 1, etag: '"x"' }]))).toBe('NoSuchUpload');
      await expect(server.store.abortMultipart(key, unknown)).resolves.toBeUndefined();
    });
  });
});

describe('disk store: part PUTs', () => {
  const KEY = 'users/alice/user-uploads/parts/video.mp4';
  let root: string;
  let store: DiskStore;

  beforeAll(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'kf-multipart-parts-'));
    store = new DiskStore({ root, publicUrl: 'http://127.0.0.1:9', signingSecret: 'parts-secret', ownerOf: (k) => k.split('/')[1] ?? null, maxUploadsPerOwner: 1 });
    await store.init();
  });

  afterAll(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  /** The request the HTTP route hands the store for a PUT to `url`. */
  const requestTo = (url: string, headers: Record<string, string> = {}): SignedObjectRequest => {
    const u = new URL(url);
    return { method: 'PUT', rawUrl: u.pathname + u.search, headers };
  };
  const refusalOf = async (promise: Promise<unknown>) =>
    promise.then(
      () => 'accepted',
      (err: unknown) => (err instanceof StorageRefusal ? `${err.status} ${err.s3Code}` : String(err)),
    );
  const partUrl = (uploadId: string, partNumber: number, contentLength: number | null = null) =>
    store.presignPart({ key: KEY, uploadId, partNumber, contentLength, expiresInSeconds: 300 });

  it('count against the owner\'s upload cap while they arrive', async () => {
    const { uploadId } = await store.createMultipart({ key: KEY, contentType: 'video/mp4' });
    const body = new PassThrough();
    let accepted!: () => void;
    const underWay = new Promise<void>((resolve) => (accepted = resolve));
    const first = store.receivePart(requestTo(await partUrl(uploadId, 1)), body, accepted);
    body.write(randomBytes(1000));
    await underWay;
    expect(store.uploadsInProgress).toBe(1);
    expect(await refusalOf(store.receivePart(requestTo(await partUrl(uploadId, 2)), Readable.from([randomBytes(10)])))).toBe('503 SlowDown');
    body.end(randomBytes(24));
    expect(await first).toMatchObject({ partNumber: 1, size: 1024 });
    expect(store.uploadsInProgress).toBe(0);
    await store.abortMultipart(KEY, uploadId);
  });

  it('refuse a declared size over maxPartBytes, a body cut short, an unknown upload; none is listed', async () => {
    const { uploadId } = await store.createMultipart({ key: KEY, contentType: 'video/mp4' });
    const tooLarge = String(MULTIPART_LIMITS.maxPartBytes + 1);
    expect(await refusalOf(store.receivePart(requestTo(await partUrl(uploadId, 1), { 'content-length': tooLarge }), Readable.from([])))).toBe(
      '413 EntityTooLarge',
    );
    const cut = new PassThrough();
    cut.on('error', () => {});
    let accepted!: () => void;
    const underWay = new Promise<void>((resolve) => (accepted = resolve));
    const cutShort = store.receivePart(requestTo(await partUrl(uploadId, 2), { 'content-length': '100' }), cut, accepted);
    await underWay;
    cut.write(randomBytes(10));
    cut.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
    expect(await refusalOf(cutShort)).toBe('400 IncompleteBody');
    expect(await store.listParts(KEY, uploadId)).toEqual([]);
    const unknown = randomBytes(24).toString('base64url');
    expect(await refusalOf(store.receivePart(requestTo(await partUrl(unknown, 1)), Readable.from([randomBytes(10)])))).toBe('404 NoSuchUpload');
    // No temporary part file is left behind.
    expect((await fsp.readdir(path.join(root, 'multipart', uploadId))).sort()).toEqual(['upload.json']);
    await store.abortMultipart(KEY, uploadId);
  });

  it('a part URL never writes an object, and an object URL cannot be turned into a part URL', async () => {
    const { uploadId } = await store.createMultipart({ key: KEY, contentType: 'video/mp4' });
    const part = await partUrl(uploadId, 1);
    expect(await refusalOf(store.receive(requestTo(part, { 'content-type': 'video/mp4' }), Readable.from([randomBytes(10)])))).toBe('403 AccessDenied');
    const object = new URL(await store.presignPut({ key: KEY, contentType: 'video/mp4', maxBytes: 1000, contentLength: null, expiresInSeconds: 300 }));
    object.searchParams.set('partNumber', '1');
    object.searchParams.set('uploadId', uploadId);
    expect(await refusalOf(store.receivePart(requestTo(object.href, { 'content-type': 'video/mp4' }), Readable.from([randomBytes(10)])))).toBe(
      '403 SignatureDoesNotMatch',
    );
    // Another upload's id, or another key, in a part URL: the signature binds both.
    const other = await store.createMultipart({ key: KEY, contentType: 'video/mp4' });
    expect(await refusalOf(store.receivePart(requestTo(part.replace(uploadId, other.uploadId)), Readable.from([randomBytes(10)])))).toBe(
      '403 SignatureDoesNotMatch',
    );
    expect(await store.head(KEY)).toBeNull();
    expect(await store.listParts(KEY, uploadId)).toEqual([]);
    await store.abortMultipart(KEY, uploadId);
    await store.abortMultipart(KEY, other.uploadId);
  });

  it('uploads survive a restart; start-up removes what a crash left of part writes', async () => {
    const { uploadId } = await store.createMultipart({ key: KEY, contentType: 'video/mp4' });
    const bytes = randomBytes(2000);
    const part = await store.receivePart(requestTo(await partUrl(uploadId, 1, bytes.length), { 'content-length': String(bytes.length) }), Readable.from([bytes]));
    await fsp.writeFile(path.join(root, 'multipart', uploadId, '.2.deadbeef.tmp'), 'half a part');
    await fsp.mkdir(path.join(root, 'multipart', randomBytes(24).toString('base64url')));
    const restarted = new DiskStore({ root, publicUrl: 'http://127.0.0.1:9', signingSecret: 'parts-secret' });
    await restarted.init();
    expect(await fsp.readdir(path.join(root, 'multipart'))).toEqual([uploadId]);
    expect(await restarted.listParts(KEY, uploadId)).toEqual([part]);
    expect(await restarted.completeMultipart(KEY, uploadId, [part])).toMatchObject({ size: 2000, sha256: sha256(bytes) });
    expect(await restarted.getRange(KEY, 0, 4095)).toEqual(bytes);
  });
});
