import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CreatedApiKey } from '../../src/domain/api-keys.js';
import { MAX_BYTES } from '../../src/domain/media-types.js';
import { Verifier } from '../../src/domain/verification.js';
import { FfprobeMediaProbe } from '../../src/media/ffprobe.js';
import type { TestServer } from '../helpers/server.js';
import { rgwForTests, startServerOn } from '../helpers/rgw.js';

// One behaviour suite, run against every object store: the embedded disk store
// and S3 (Ceph RGW, started by scripts/ceph-rgw.sh). Each store sits behind a
// real Keyframe server; clients talk to it over real HTTP, as a browser or SDK
// would. Where S3 cannot hold a rule at upload time (the size limit without
// contentLength), the suite shows verification holding it instead.

const fixturesDir = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/media');
const fixture = (name: string) => readFileSync(path.join(fixturesDir, name));
const PNG = fixture('sample.png');
const JPEG = fixture('sample.jpg');
const MP4 = fixture('sample.mp4');
const HTML = fixture('page.html');

const rgw = await rgwForTests('object-store behaviour suite');

interface Presigned {
  s3_key: string;
  upload_url: string;
  content_type: string;
  max_bytes: number;
}

interface PutResult {
  status: number;
  /** S3's error code from the XML body, when refused. */
  code: string | null;
}

/** PUTs bytes to a presigned URL the way a client does; `contentType: null` sends none. */
async function put(url: string, bytes: Buffer, contentType: string | null): Promise<PutResult> {
  const headers: Record<string, string> = {};
  if (contentType !== null) headers['content-type'] = contentType;
  const res = await fetch(url, { method: 'PUT', headers, body: new Uint8Array(bytes), signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  return { status: res.status, code: /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? null };
}

/** The same URL with one query parameter replaced. */
function withParam(url: string, name: string, value: string): string {
  const u = new URL(url);
  u.searchParams.set(name, value);
  return u.href;
}

/** The same URL pointing at another object key. */
function withKey(url: string, fromKey: string, toKey: string): string {
  const u = new URL(url);
  expect(u.pathname.endsWith(`/${fromKey}`)).toBe(true);
  u.pathname = u.pathname.slice(0, -fromKey.length) + toKey;
  return u.href;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/** A flipped last character: same length and alphabet, wrong signature. */
const tamper = (signature: string) => signature.slice(0, -1) + (signature.endsWith('0') ? '1' : '0');

describe.each(['disk', 's3'] as const)('object store behaviour: %s', (storeKind) => {
  describe.skipIf(storeKind === 's3' && rgw.skip)(`${storeKind} store behind a real server`, () => {
    let server: TestServer;
    let alice: CreatedApiKey;
    let bob: CreatedApiKey;
    let verifier: Verifier;

    beforeAll(async () => {
      server = await startServerOn(storeKind, rgw, 'behaviour');
      expect(server.store.kind).toBe(storeKind);
      alice = await server.createKey('alice');
      bob = await server.createKey('bob');
      verifier = new Verifier(server.db, server.store, { scratchDir: path.join(server.dataDir, 'tmp', 'verify'), probe: new FfprobeMediaProbe() });
    });

    afterAll(async () => {
      await server?.stop();
    });

    async function presign(who: CreatedApiKey, body: Record<string, unknown>): Promise<Presigned> {
      const res = await server.api('POST', '/api/s3/presign-upload', { key: who.key, body: { kind: 'upload', ...body } });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body as Presigned;
    }

    /** Presigns for `who` and uploads `bytes` as `contentType`; the upload must succeed. */
    async function upload(who: CreatedApiKey, bytes: Buffer, contentType: string): Promise<Presigned> {
      const presigned = await presign(who, { contentType });
      expect(await put(presigned.upload_url, bytes, contentType)).toEqual({ status: 200, code: null });
      return presigned;
    }

    describe('presign and upload', () => {
      it('answers a key under the caller\'s prefix and a URL that accepts exactly the declared upload', async () => {
        const presigned = await presign(alice, { contentType: 'image/png', fileName: 'x.html' });
        expect(presigned.s3_key).toMatch(/^users\/alice\/user-uploads\/[^/]+\/[^/]+\.png$/);
        expect(presigned.max_bytes).toBe(MAX_BYTES.image);
        expect(await server.store.head(presigned.s3_key)).toBeNull();

        expect(await put(presigned.upload_url, PNG, 'image/png')).toEqual({ status: 200, code: null });
        const info = await server.store.head(presigned.s3_key);
        expect(info).toMatchObject({ size: PNG.length, contentType: 'image/png' });
        expect(info!.etag).toEqual(expect.any(String));
      });

      it('accepts an upload of exactly the declared contentLength', async () => {
        const presigned = await presign(alice, { contentType: 'image/png', contentLength: PNG.length });
        expect(await put(presigned.upload_url, PNG, 'image/png')).toEqual({ status: 200, code: null });
        expect((await server.store.head(presigned.s3_key))?.size).toBe(PNG.length);
      });

      it('refuses a contentLength outside 1..max_bytes before signing anything', async () => {
        for (const contentLength of [0, MAX_BYTES.image + 1]) {
          const res = await server.api('POST', '/api/s3/presign-upload', {
            key: alice.key,
            body: { kind: 'upload', contentType: 'image/png', contentLength },
          });
          expect(res.status).toBe(400);
          expect(res.body.error).toBe('validation_error');
        }
      });
    });

    describe('refusals at upload time', () => {
      it('refuses a bad signature', async () => {
        const presigned = await presign(alice, { contentType: 'image/png' });
        const signature = new URL(presigned.upload_url).searchParams.get('X-Amz-Signature')!;
        const refused = await put(withParam(presigned.upload_url, 'X-Amz-Signature', tamper(signature)), PNG, 'image/png');
        expect(refused).toEqual({ status: 403, code: 'SignatureDoesNotMatch' });
        expect(await server.store.head(presigned.s3_key)).toBeNull();
      });

      it('refuses a URL whose lifetime was stretched after signing', async () => {
        const presigned = await presign(alice, { contentType: 'image/png' });
        const refused = await put(withParam(presigned.upload_url, 'X-Amz-Expires', '604800'), PNG, 'image/png');
        expect(refused).toEqual({ status: 403, code: 'SignatureDoesNotMatch' });
        expect(await server.store.head(presigned.s3_key)).toBeNull();
      });

      it('refuses an expired URL', async () => {
        const key = `users/alice/user-uploads/batch_expiry/file_expiry.png`;
        const url = await server.store.presignPut({ key, contentType: 'image/png', maxBytes: MAX_BYTES.image, contentLength: null, expiresInSeconds: 1 });
        // X-Amz-Date has whole seconds: after 2.5 s a 1 s URL is past its end whatever the rounding.
        await sleep(2500);
        const refused = await put(url, PNG, 'image/png');
        expect(refused.status).toBe(403);
        expect(refused.code).toBe('AccessDenied');
        expect(await server.store.head(key)).toBeNull();
      });

      it('refuses a URL pointed at another key (same prefix, or another user\'s)', async () => {
        const mine = await presign(alice, { contentType: 'image/png' });
        const other = mine.s3_key.replace(/\/[^/]+\.png$/, '/file_other.png');
        expect(await put(withKey(mine.upload_url, mine.s3_key, other), PNG, 'image/png')).toEqual({ status: 403, code: 'SignatureDoesNotMatch' });
        const bobs = await presign(bob, { contentType: 'image/png' });
        expect(await put(withKey(mine.upload_url, mine.s3_key, bobs.s3_key), PNG, 'image/png')).toEqual({
          status: 403,
          code: 'SignatureDoesNotMatch',
        });
        for (const key of [mine.s3_key, other, bobs.s3_key]) expect(await server.store.head(key)).toBeNull();
      });

      it('refuses another Content-Type, or none', async () => {
        const presigned = await presign(alice, { contentType: 'image/png' });
        for (const contentType of ['text/html', 'image/jpeg', null]) {
          const refused = await put(presigned.upload_url, HTML, contentType);
          expect(refused, `Content-Type ${contentType}`).toEqual({ status: 403, code: 'SignatureDoesNotMatch' });
        }
        expect(await server.store.head(presigned.s3_key)).toBeNull();
      });

      it('refuses any other length than the signed contentLength (one byte more, one byte less)', async () => {
        const presigned = await presign(alice, { contentType: 'image/png', contentLength: PNG.length });
        for (const bytes of [Buffer.concat([PNG, Buffer.from([0])]), PNG.subarray(0, PNG.length - 1)]) {
          const refused = await put(presigned.upload_url, bytes, 'image/png');
          expect(refused, `${bytes.length} bytes`).toEqual({ status: 403, code: 'SignatureDoesNotMatch' });
        }
        expect(await server.store.head(presigned.s3_key)).toBeNull();
      });

      it('holds max_bytes without contentLength: disk refuses the upload, S3 takes it and verification rejects it', async () => {
        const presigned = await presign(alice, { contentType: 'image/png' });
        const oversize = Buffer.concat([PNG, Buffer.alloc(presigned.max_bytes + 1 - PNG.length)]);
        const result = await put(presigned.upload_url, oversize, 'image/png');
        if (storeKind === 'disk') {
          expect(result).toEqual({ status: 413, code: 'EntityTooLarge' });
          expect(await server.store.head(presigned.s3_key)).toBeNull();
          expect((await verifier.status('alice', presigned.s3_key))?.state).toBe('pending');
        } else {
          // A presigned PUT carries no size policy: S3 stores the object...
          expect(result).toEqual({ status: 200, code: null });
          expect((await server.store.head(presigned.s3_key))?.size).toBe(presigned.max_bytes + 1);
          // ...and verification rejects it and deletes it.
          const status = await verifier.status('alice', presigned.s3_key);
          expect(status).toMatchObject({ s3_key: presigned.s3_key, state: 'rejected', max_bytes: presigned.max_bytes });
          expect(status!.reason).toEqual(expect.any(String));
          expect(await server.store.head(presigned.s3_key)).toBeNull();
        }
      });
    });

    describe('reading and removing objects', () => {
      it('head: size and type of an object, null for a missing one', async () => {
        const { s3_key } = await upload(alice, MP4, 'video/mp4');
        expect(await server.store.head(s3_key)).toMatchObject({ size: MP4.length, contentType: 'video/mp4' });
        expect(await server.store.head(s3_key.replace(/\.mp4$/, '0.mp4'))).toBeNull();
      });

      it('getRange: exactly the bytes asked for, fewer past the end, null for a missing object', async () => {
        const { s3_key } = await upload(alice, MP4, 'video/mp4');
        expect(await server.store.getRange(s3_key, 0, 11)).toEqual(MP4.subarray(0, 12));
        expect(await server.store.getRange(s3_key, 100, 199)).toEqual(MP4.subarray(100, 200));
        expect(await server.store.getRange(s3_key, MP4.length - 6, MP4.length + 100)).toEqual(MP4.subarray(MP4.length - 6));
        expect(await server.store.getRange(s3_key, MP4.length + 10, MP4.length + 20)).toEqual(Buffer.alloc(0));
        expect(await server.store.getRange(s3_key.replace(/\.mp4$/, '0.mp4'), 0, 11)).toBeNull();
      });

      it('presignGet: a URL that serves the bytes, and refuses when tampered with', async () => {
        const { s3_key } = await upload(alice, PNG, 'image/png');
        const url = await server.store.presignGet(s3_key, 60);
        const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toBe('image/png');
        expect(Buffer.from(await res.arrayBuffer())).toEqual(PNG);

        const signature = new URL(url).searchParams.get('X-Amz-Signature')!;
        const tampered = await fetch(withParam(url, 'X-Amz-Signature', tamper(signature)), { signal: AbortSignal.timeout(10_000) });
        expect(tampered.status).toBe(403);
        await tampered.arrayBuffer();
      });

      it('presignGet with response headers: the download answers with that type and disposition; they are signed', async () => {
        const { s3_key } = await upload(alice, PNG, 'image/png');
        for (const response of [
          { contentType: 'image/png', contentDisposition: 'inline' as const },
          { contentType: 'application/octet-stream', contentDisposition: 'attachment' as const },
        ]) {
          const url = await server.store.presignGet(s3_key, 60, response);
          const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
          expect(res.status).toBe(200);
          expect(res.headers.get('content-type')).toBe(response.contentType);
          expect(res.headers.get('content-disposition')).toBe(response.contentDisposition);
          expect(Buffer.from(await res.arrayBuffer())).toEqual(PNG);
          // The parameters are part of the signature: nobody can turn an attachment into an inline page.
          const changed = await fetch(withParam(url, 'response-content-type', 'text/html'), { signal: AbortSignal.timeout(10_000) });
          expect(changed.status).toBe(403);
          await changed.arrayBuffer();
        }
      });

      it('openVerified: the bytes while the ETag is the verified one, "changed" after a replacement, "missing" after a delete', async () => {
        const { s3_key } = await upload(alice, PNG, 'image/png');
        const etag = (await server.store.head(s3_key))!.etag!;
        const body = await server.store.openVerified(s3_key, etag);
        expect(body).not.toBeTypeOf('string');
        expect(await readAll(body as Readable)).toEqual(PNG);

        if (storeKind === 's3') {
          // A second PutObject under the key (what a replayed presigned URL does).
          await server.store.put(s3_key, Readable.from([JPEG]), 'image/png');
          expect(await server.store.openVerified(s3_key, etag)).toBe('changed');
        } else {
          // The disk store never replaces an object: an ETag of other bytes is what a replacement would look like.
          expect(await server.store.openVerified(s3_key, '"0123456789abcdef0123456789abcdef"')).toBe('changed');
          // A reader that opened the object keeps its bytes, whatever happens to the key afterwards.
          const early = (await server.store.openVerified(s3_key, etag)) as Readable;
          await server.store.delete(s3_key);
          expect(await readAll(early)).toEqual(PNG);
        }
        await server.store.delete(s3_key);
        expect(await server.store.openVerified(s3_key, etag)).toBe('missing');
        expect(await server.store.openVerified(s3_key.replace(/\.png$/, '0.png'), etag)).toBe('missing');
      });

      it('put: stores what the server itself writes (a rendered video)', async () => {
        const key = 'users/alice/generations/gen_behaviour.mp4';
        await server.store.put(key, Readable.from([MP4.subarray(0, 1000), MP4.subarray(1000)]), 'video/mp4');
        expect(await server.store.head(key)).toMatchObject({ size: MP4.length, contentType: 'video/mp4' });
        expect(await server.store.getRange(key, 0, MP4.length - 1)).toEqual(MP4);
      });

      it('delete: the object is gone everywhere, and deleting again is no error', async () => {
        const { s3_key } = await upload(alice, PNG, 'image/png');
        const url = await server.store.presignGet(s3_key, 60);
        await server.store.delete(s3_key);
        expect(await server.store.head(s3_key)).toBeNull();
        expect(await server.store.getRange(s3_key, 0, 7)).toBeNull();
        const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
        expect(res.status).toBe(404);
        await res.arrayBuffer();
        await expect(server.store.delete(s3_key)).resolves.toBeUndefined();
      });

      it('list: every object under a prefix once, with its size and age; a deleted one is gone; other prefixes are left out', async () => {
        const user = `lister${Date.now().toString(36)}`;
        const keys = [
          `users/${user}/generations/gen_a.mp4`,
          `users/${user}/generations/gen_b.mp4`,
          `users/${user}/generations/gen_c/run-1/output.mp4`,
        ];
        const before = Date.now();
        for (const key of keys) await server.store.put(key, Readable.from([MP4]), 'video/mp4');
        await server.store.put(`users/${user}x/generations/gen_other.mp4`, Readable.from([PNG]), 'image/png');
        await server.store.delete(keys[1]!);
        const listed = [];
        for await (const object of server.store.list(`users/${user}/`)) listed.push(object);
        expect(listed.map((o) => o.key).sort()).toEqual([keys[0], keys[2]]);
        for (const object of listed) {
          expect(object.size).toBe(MP4.length);
          // Stores keep whole seconds (S3's LastModified): a second's slack either way.
          expect(object.lastModified.getTime()).toBeGreaterThan(before - 2000);
          expect(object.lastModified.getTime()).toBeLessThan(Date.now() + 2000);
        }
        // A prefix that is not a folder is a plain string prefix, as on S3.
        const partial = [];
        for await (const object of server.store.list(`users/${user}/generations/gen_c`)) partial.push(object.key);
        expect(partial).toEqual([keys[2]]);
        const none = [];
        for await (const object of server.store.list(`users/nobody${user}/`)) none.push(object);
        expect(none).toEqual([]);
      });
    });

    describe('verification outcomes', () => {
      it('is pending before the upload', async () => {
        const presigned = await presign(alice, { contentType: 'image/png' });
        expect(await verifier.status('alice', presigned.s3_key)).toMatchObject({ state: 'pending', content_type: 'image/png' });
      });

      it('verifies a real PNG declared as image/png', async () => {
        const { s3_key } = await upload(alice, PNG, 'image/png');
        const status = await verifier.status('alice', s3_key);
        expect(status).toMatchObject({ s3_key, state: 'verified', content_type: 'image/png', size: PNG.length, max_bytes: MAX_BYTES.image });
        expect(await server.store.head(s3_key)).not.toBeNull();
      });

      it('rejects an HTML file, and a JPEG, declared as image/png', async () => {
        for (const bytes of [HTML, JPEG]) {
          const { s3_key } = await upload(alice, bytes, 'image/png');
          const status = await verifier.status('alice', s3_key);
          expect(status).toMatchObject({ s3_key, state: 'rejected', content_type: 'image/png' });
          expect(status!.reason).toEqual(expect.any(String));
        }
      });

      it('records the verified ETag, so a consumer notices the object being replaced through its still-valid URL', async () => {
        const presigned = await upload(alice, PNG, 'image/png');
        const status = await verifier.status('alice', presigned.s3_key);
        expect(status).toMatchObject({ state: 'verified', etag: expect.any(String) });
        // What a consumer's pinned read (openVerified on the verified ETag) sees.
        const pinned = async () => {
          const body = await server.store.openVerified(presigned.s3_key, status!.etag!);
          if (typeof body === 'string') return body;
          body.destroy();
          return 'unchanged';
        };
        expect(await pinned()).toBe('unchanged');

        // Other bytes through the same URL, still within its lifetime: S3 accepts them (a presigned URL can be
        // replayed there; the pinned read holds), the disk store writes each key once and refuses them.
        const otherBytes = Buffer.concat([PNG, Buffer.from('trailing bytes that change the object')]);
        if (storeKind === 's3') {
          expect(await put(presigned.upload_url, otherBytes, 'image/png')).toEqual({ status: 200, code: null });
          expect(await pinned()).toBe('changed');
        } else {
          expect(await put(presigned.upload_url, otherBytes, 'image/png')).toEqual({ status: 403, code: 'AccessDenied' });
          expect(await pinned()).toBe('unchanged');
          expect(await server.store.getRange(presigned.s3_key, 0, PNG.length + 100)).toEqual(PNG);
        }

        await server.store.delete(presigned.s3_key);
        expect(await pinned()).toBe('missing');
      });
    });

    describe('isolation between users', () => {
      it('keeps each user under their own prefix and hides one user\'s uploads from another', async () => {
        const alices = await upload(alice, PNG, 'image/png');
        const bobs = await upload(bob, JPEG, 'image/jpeg');
        expect(alices.s3_key.startsWith('users/alice/')).toBe(true);
        expect(bobs.s3_key.startsWith('users/bob/')).toBe(true);

        // Neither can see the other's upload: the same answer as for a key that does not exist.
        expect(await verifier.status('bob', alices.s3_key)).toBeNull();
        expect(await verifier.status('alice', bobs.s3_key)).toBeNull();
        expect(await verifier.status('alice', alices.s3_key.replace('users/alice/', 'users/bob/'))).toBeNull();

        // Alice's URL cannot overwrite Bob's object, and Bob's object is untouched.
        const again = await presign(alice, { contentType: 'image/jpeg' });
        expect(await put(withKey(again.upload_url, again.s3_key, bobs.s3_key), PNG, 'image/jpeg')).toEqual({
          status: 403,
          code: 'SignatureDoesNotMatch',
        });
        expect(await server.store.getRange(bobs.s3_key, 0, JPEG.length - 1)).toEqual(JPEG);
        expect((await verifier.status('bob', bobs.s3_key))?.state).toBe('verified');
      });
    });
  });
});
