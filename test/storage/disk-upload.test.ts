import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http, { type IncomingHttpHeaders } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import { ApiKeys } from '../../src/domain/api-keys.js';
import { DiskStore } from '../../src/storage/disk/disk-store.js';
import { SigV4Signer } from '../../src/storage/sigv4.js';
import { ensureBuilt, ROOT } from '../helpers/build.js';
import { testDatabase, type TestDatabase } from '../helpers/database.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { rawRequest as rawSocketRequest, requestHead } from '../reliability/support/raw-http.js';

const SECRET = 'disk-upload-test-signing-secret-0123456789';
const ALLOWED_ORIGIN = 'http://app.example';
const IMAGE_MAX = 20 * 1024 * 1024;
const MiB = 1024 * 1024;

let server: TestServer;
let key: string;

beforeAll(async () => {
  server = await startTestServer({ KEYFRAME_SIGNING_SECRET: SECRET, KEYFRAME_CORS_ORIGINS: ALLOWED_ORIGIN });
  key = (await server.createKey('alice')).key;
});
afterAll(async () => server?.stop());

interface Presigned {
  s3_key: string;
  upload_url: string;
  content_type: string;
  max_bytes: number;
}

async function presign(contentType = 'image/png', on: TestServer = server, apiKey = key): Promise<Presigned> {
  const res = await on.api('POST', '/api/s3/presign-upload', { key: apiKey, body: { kind: 'upload', contentType } });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as Presigned;
}

/** A signer with the server's credentials, for URLs the server itself would never hand out. */
const testSigner = new SigV4Signer({ accessKeyId: 'keyframe', secretAccessKey: SECRET, region: 'us-east-1', service: 's3' });

// --- where the disk store keeps things -------------------------------------------------

const objectFile = (dataDir: string, s3Key: string) => path.join(dataDir, 'objects', s3Key);
const metaFile = (dataDir: string, s3Key: string) => path.join(dataDir, 'meta', `${s3Key}.json`);
/** Files (not directories other parts of Keyframe may keep there) in the store's temporary dir. */
const tmpFiles = (dataDir: string) =>
  readdirSync(path.join(dataDir, 'tmp'), { withFileTypes: true })
    .filter((e) => !e.isDirectory())
    .map((e) => e.name);

async function stateOf(s3Key: string, db: Db = server.db) {
  return db.selectFrom('uploads').selectAll().where('s3_key', '=', s3Key).executeTakeFirstOrThrow();
}

/** No object, no sidecar, no temporary file, and the record still pending. */
async function expectNothingStored(s3Key: string, dataDir = server.dataDir, db: Db = server.db) {
  expect(existsSync(objectFile(dataDir, s3Key)), 'object file').toBe(false);
  expect(existsSync(metaFile(dataDir, s3Key)), 'meta file').toBe(false);
  expect(tmpFiles(dataDir), 'tmp dir').toEqual([]);
  const row = await stateOf(s3Key, db);
  expect(row.state).toBe('pending');
  expect(row.size).toBeNull();
}

// --- HTTP clients ------------------------------------------------------------------------

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

type Body = Buffer | (() => AsyncIterable<Buffer>);

/**
 * One request with node:http: the path goes on the wire exactly as given (no dot-segment
 * normalisation, unlike fetch), and a body given as a generator is sent chunked unless a
 * Content-Length is set. A client error after the answer arrived (the server closing while
 * we still write) does not hide the answer.
 */
function rawRequest(
  base: string,
  init: { method: string; path: string; headers?: Record<string, string | number>; body?: Body; keepAlive?: boolean },
): Promise<RawResponse> {
  const { hostname, port } = new URL(base);
  // Without an agent Node's client sends `Connection: close`; browsers keep connections alive.
  const agent = init.keepAlive ? new http.Agent({ keepAlive: true, maxSockets: 1 }) : false;
  return new Promise<RawResponse>((resolve, reject) => {
    const req = http.request({ host: hostname, port, method: init.method, path: init.path, headers: init.headers, agent });
    let answered = false;
    req.setTimeout(60_000, () => req.destroy(new Error('request timed out')));
    req.on('response', (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        req.destroy();
      });
      res.on('error', reject);
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    const body = init.body;
    if (body === undefined) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    else
      void (async () => {
        for await (const chunk of body()) {
          if (req.destroyed) return;
          if (!req.write(chunk)) await once(req, 'drain');
        }
        req.end();
      })().catch(() => undefined);
  }).finally(() => {
    if (agent) agent.destroy();
  });
}

const pathAndQuery = (url: string) => {
  const u = new URL(url);
  return u.pathname + u.search;
};

async function* zeros(total: number, chunkSize = 256 * 1024): AsyncGenerator<Buffer> {
  const chunk = Buffer.alloc(chunkSize);
  for (let sent = 0; sent < total; sent += chunkSize) yield chunk.subarray(0, Math.min(chunkSize, total - sent));
}

/** Runs the real curl; returns status, headers and body. */
function curl(args: string[], stdin?: () => AsyncIterable<Buffer>): Promise<{ status: number; headers: string; body: string }> {
  return new Promise((resolve, reject) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'keyframe-curl-'));
    const headerFile = path.join(dir, 'headers');
    const child = spawn('curl', ['-sS', '--max-time', '60', '-D', headerFile, '-o', path.join(dir, 'body'), '-w', '%{http_code}', ...args]);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    child.on('error', reject);
    if (stdin) {
      void (async () => {
        for await (const chunk of stdin()) {
          if (!child.stdin.write(chunk)) await once(child.stdin, 'drain');
        }
        child.stdin.end();
      })().catch(() => undefined);
      child.stdin.on('error', () => undefined);
    }
    child.on('close', (code) => {
      const result = {
        status: Number(out.trim()),
        headers: existsSync(headerFile) ? readFileSync(headerFile, 'utf8') : '',
        body: existsSync(path.join(dir, 'body')) ? readFileSync(path.join(dir, 'body'), 'utf8') : '',
      };
      rmSync(dir, { recursive: true, force: true });
      if (result.status === 0) reject(new Error(`curl failed (${code}): ${err}`));
      else resolve(result);
    });
  });
}

/** An S3-style refusal: the status, an XML <Error> body, and one of the given S3 codes. */
function expectS3Error(res: { status: number; headers: IncomingHttpHeaders | Headers; body: Buffer | string }, status: number, codes: string[]) {
  const contentType = res.headers instanceof Headers ? res.headers.get('content-type') : res.headers['content-type'];
  const text = res.body.toString();
  expect(res.status, text).toBe(status);
  expect(contentType).toMatch(/^application\/xml/);
  const code = /^<\?xml[^>]*\?>\s*<Error><Code>([A-Za-z]+)<\/Code><Message>[^<]+<\/Message><\/Error>$/.exec(text)?.[1];
  expect(codes, text).toContain(code);
}

const png = (size: number) => Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), randomBytes(size - 8)]);
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');


// --- tests -------------------------------------------------------------------------------

describe('a successful upload', () => {
  it('curl -X PUT --data-binary @file → 200 with an ETag; the bytes on disk; the record uploaded', async () => {
    const p = await presign('image/png');
    const dir = mkdtempSync(path.join(tmpdir(), 'keyframe-file-'));
    const file = path.join(dir, 'image.png');
    const bytes = png(3 * MiB);
    writeFileSync(file, bytes);
    try {
      // curl asks before sending a body this large (Expect: 100-continue); the server must invite
      // the body once the URL checks out. Here curl would wait longer than it may run, so an
      // upload that was never invited fails.
      const res = await curl(['--expect100-timeout', '30', '--max-time', '20', '-X', 'PUT', '--data-binary', `@${file}`, '-H', 'Content-Type: image/png', p.upload_url]);
      expect(res.status, res.body).toBe(200);
      expect(res.headers).toMatch(/^HTTP\/1\.1 100 Continue/);
      expect(res.headers).toMatch(/^etag: "[0-9a-f]{32}"\r?$/im);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect((await readFile(objectFile(server.dataDir, p.s3_key))).equals(bytes)).toBe(true);
    expect(tmpFiles(server.dataDir)).toEqual([]);
    const row = await stateOf(p.s3_key);
    expect(row).toMatchObject({ state: 'uploaded', size: bytes.length, sha256: sha256(bytes), content_type: 'image/png' });
    expect(row.uploaded_at).not.toBeNull();
  });

  it('a presigned GET URL downloads the bytes; a tampered one is refused', async () => {
    const p = await presign('image/png');
    const bytes = png(50_000);
    const put = await fetch(p.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: bytes });
    expect(put.status).toBe(200);
    const etag = put.headers.get('etag');

    // The same store the server runs, built here with the same secret, data dir and public URL.
    const store = new DiskStore({ root: server.dataDir, publicUrl: server.url, signingSecret: SECRET });
    const url = await store.presignGet(p.s3_key, 60);
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    expect(res.headers.get('etag')).toBe(etag);
    expect(Buffer.from(await res.arrayBuffer()).equals(bytes)).toBe(true);

    const tampered = url.replace(/X-Amz-Signature=([0-9a-f])/, (_m, c: string) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`);
    const refused = await fetch(tampered);
    expectS3Error({ status: refused.status, headers: refused.headers, body: await refused.text() }, 403, ['SignatureDoesNotMatch']);

    const missing = await fetch(await store.presignGet(`users/alice/user-uploads/batch_${'a'.repeat(22)}/file_${'b'.repeat(22)}.png`, 60));
    expectS3Error({ status: missing.status, headers: missing.headers, body: await missing.text() }, 404, ['NoSuchKey']);
  });

  it('a retry with the same bytes (an answer lost) gets 200 and the same ETag; a verified record stays verified', async () => {
    const p = await presign('image/png');
    const first = png(10_000);
    const put1 = await fetch(p.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: first });
    expect(put1.status).toBe(200);
    const verifiedAt = new Date().toISOString();
    await server.db.updateTable('uploads').set({ state: 'verified', verified_at: verifiedAt, etag: put1.headers.get('etag') }).where('s3_key', '=', p.s3_key).execute();
    const metaBefore = readFileSync(metaFile(server.dataDir, p.s3_key), 'utf8');

    const put2 = await fetch(p.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: first });
    expect(put2.status).toBe(200);
    expect(put2.headers.get('etag')).toBe(put1.headers.get('etag'));
    expect((await readFile(objectFile(server.dataDir, p.s3_key))).equals(first)).toBe(true);
    expect(readFileSync(metaFile(server.dataDir, p.s3_key), 'utf8')).toBe(metaBefore);
    expect(tmpFiles(server.dataDir)).toEqual([]);
    expect(await stateOf(p.s3_key)).toMatchObject({ state: 'verified', verified_at: verifiedAt, size: first.length, sha256: sha256(first) });
  });

  it('other bytes through a used URL: 403 AccessDenied; object, meta and record unchanged', async () => {
    const p = await presign('image/png');
    const first = png(10_000);
    expect((await fetch(p.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: first })).status).toBe(200);
    const metaBefore = readFileSync(metaFile(server.dataDir, p.s3_key), 'utf8');
    const rowBefore = await stateOf(p.s3_key);

    // Same length other bytes, longer, shorter (with a length, and chunked), an empty body.
    const variants: [string, Buffer, boolean][] = [
      ['same length', png(10_000), true],
      ['longer', png(20_000), true],
      ['shorter', first.subarray(0, 5000), true],
      ['a prefix, chunked', first.subarray(0, 5000), false],
      ['longer, chunked', Buffer.concat([first, Buffer.from('x')]), false],
      ['empty', Buffer.alloc(0), true],
    ];
    for (const [label, bytes, withLength] of variants) {
      const res = await rawRequest(server.url, {
        method: 'PUT',
        path: pathAndQuery(p.upload_url),
        headers: withLength ? { 'content-type': 'image/png', 'content-length': bytes.length } : { 'content-type': 'image/png' },
        body: withLength ? bytes : async function* () {
          yield bytes;
        },
      });
      expectS3Error(res, 403, ['AccessDenied']);
      expect(res.body.toString(), label).toMatch(/already used; the stored object cannot be replaced/);
    }
    expect((await readFile(objectFile(server.dataDir, p.s3_key))).equals(first)).toBe(true);
    expect(readFileSync(metaFile(server.dataDir, p.s3_key), 'utf8')).toBe(metaBefore);
    expect(tmpFiles(server.dataDir)).toEqual([]);
    expect(await stateOf(p.s3_key)).toEqual(rowBefore);
  });

  it('a key the server deleted keeps a tombstone: its URL cannot write it again, not even with the same bytes', async () => {
    const p = await presign('image/png');
    const bytes = png(5000);
    expect((await fetch(p.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: bytes })).status).toBe(200);
    await server.store.delete(p.s3_key);
    expect(existsSync(objectFile(server.dataDir, p.s3_key))).toBe(false);
    for (const body of [bytes, png(6000)]) {
      const res = await fetch(p.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body });
      expectS3Error({ status: res.status, headers: res.headers, body: await res.text() }, 403, ['AccessDenied']);
    }
    expect(existsSync(objectFile(server.dataDir, p.s3_key))).toBe(false);
    expect(await server.store.head(p.s3_key)).toBeNull();
    expect(tmpFiles(server.dataDir)).toEqual([]);
  });

  it('put (objects the server writes) is write-once too', async () => {
    const k = `users/alice/generations/gen_writeonce${randomBytes(4).toString('hex')}.mp4`;
    const bytes = randomBytes(3000);
    await server.store.put(k, Readable.from([bytes]), 'video/mp4');
    await server.store.put(k, Readable.from([bytes.subarray(0, 1000), bytes.subarray(1000)]), 'video/mp4');
    await expect(server.store.put(k, Readable.from([randomBytes(3000)]), 'video/mp4')).rejects.toMatchObject({ status: 403, s3Code: 'AccessDenied' });
    expect((await readFile(objectFile(server.dataDir, k))).equals(bytes)).toBe(true);
    expect(tmpFiles(server.dataDir)).toEqual([]);
  });

  it('GETs say nosniff and a Content-Disposition (inline for a media type, derived from the stored type); so do PUTs and refusals', async () => {
    const p = await presign('image/png');
    const bytes = png(4000);
    const put = await fetch(p.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: bytes });
    expect(put.status).toBe(200);
    expect(put.headers.get('x-content-type-options')).toBe('nosniff');

    const store = new DiskStore({ root: server.dataDir, publicUrl: server.url, signingSecret: SECRET });
    // The server's own store derives the disposition from the stored type: image/png plays inline.
    const url = await server.store.presignGet(p.s3_key, 60);
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-type')).toBe('image/png');
    expect(res.headers.get('content-disposition')).toBe('inline');
    await res.arrayBuffer();

    // A crafted key holding a type outside the media table is never inline.
    const crafted = `users/zed/nosniff-${randomBytes(4).toString('hex')}.html`;
    await store.put(crafted, Readable.from([Buffer.from('<script>alert(1)</script>')]), 'text/html');
    const html = await fetch(await server.store.presignGet(crafted, 60));
    expect(html.headers.get('content-disposition')).toBe('attachment');
    expect(html.headers.get('content-type')).toBe('application/octet-stream');
    expect(html.headers.get('x-content-type-options')).toBe('nosniff');
    await html.arrayBuffer();

    const refusals = [
      await fetch(url.replace(/X-Amz-Signature=([0-9a-f])/, (_m, c: string) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`)),
      await fetch(p.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: png(10) }),
      await fetch(await store.presignGet(`users/alice/user-uploads/batch_${'c'.repeat(22)}/file_${'d'.repeat(22)}.png`, 60)),
      await fetch(p.upload_url, { method: 'DELETE' }),
    ];
    for (const r of refusals) {
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.headers.get('x-content-type-options')).toBe('nosniff');
      await r.arrayBuffer();
    }
  });

  it('accepts a body of exactly max_bytes', async () => {
    const p = await presign('image/png');
    const res = await rawRequest(server.url, {
      method: 'PUT',
      path: pathAndQuery(p.upload_url),
      headers: { 'content-type': 'image/png', 'content-length': IMAGE_MAX },
      body: () => zeros(IMAGE_MAX),
    });
    expect(res.status).toBe(200);
    expect(statSync(objectFile(server.dataDir, p.s3_key)).size).toBe(IMAGE_MAX);
  });
});

describe('refusals of an upload URL: 403, an S3 XML error, nothing stored', () => {
  let p: Presigned;
  const body = png(2048);

  beforeAll(async () => {
    p = await presign('image/png');
  });

  const put = async (url: string, headers: Record<string, string> = { 'content-type': 'image/png' }) => {
    const res = await rawRequest(server.url, { method: 'PUT', path: pathAndQuery(url), headers, body });
    return res;
  };
  const refused = async (url: string, headers?: Record<string, string>) => {
    expectS3Error(await put(url, headers), 403, ['SignatureDoesNotMatch', 'AccessDenied']);
  };

  it('a wrong signature', async () => {
    const u = new URL(p.upload_url);
    const sig = u.searchParams.get('X-Amz-Signature')!;
    u.searchParams.set('X-Amz-Signature', [...sig].reverse().join(''));
    expectS3Error(await put(u.toString()), 403, ['SignatureDoesNotMatch']);
    u.searchParams.set('X-Amz-Signature', 'not-a-signature');
    await refused(u.toString());
  });

  it('a changed key path', async () => {
    const { s3_key: k } = p;
    const variants = [
      k.replace(/file_(.)/, (_m, c: string) => `file_${c === 'A' ? 'B' : 'A'}`),
      k.replace(/batch_(.)/, (_m, c: string) => `batch_${c === 'A' ? 'B' : 'A'}`),
      k.replace(/\.png$/, '.html'),
      k.replace('users/alice/', 'users/alicf/'),
      `${k}/x`,
      k.slice(0, k.lastIndexOf('/')),
    ];
    for (const changed of variants) await refused(p.upload_url.replace(k, changed));
  });

  it('each signed query parameter changed', async () => {
    const change: Record<string, (v: string) => string> = {
      'X-Amz-Algorithm': () => 'AWS4-HMAC-SHA512',
      'X-Amz-Credential': (v) => v.replace(/^keyframe\//, 'admin/'),
      'X-Amz-Date': (v) => v.replace(/\d(?=Z$)/, (d) => String((Number(d) + 1) % 10)),
      'X-Amz-Expires': () => '604800',
      'X-Amz-SignedHeaders': () => 'host',
      'x-keyframe-max-bytes': () => String(200 * MiB),
    };
    const names = [...new URL(p.upload_url).searchParams.keys()].filter((n) => n !== 'X-Amz-Signature');
    expect(names.sort()).toEqual(Object.keys(change).sort());
    for (const name of names) {
      const u = new URL(p.upload_url);
      u.searchParams.set(name, change[name]!(u.searchParams.get(name)!));
      await refused(u.toString());
    }
  });

  it('each parameter dropped, duplicated (same or other value), or an extra one added', async () => {
    const names = [...new URL(p.upload_url).searchParams.keys()];
    expect(names).toContain('X-Amz-Signature');
    for (const name of names) {
      const dropped = new URL(p.upload_url);
      dropped.searchParams.delete(name);
      await refused(dropped.toString());

      const same = new URL(p.upload_url);
      same.searchParams.append(name, same.searchParams.get(name)!);
      await refused(same.toString());

      const other = new URL(p.upload_url);
      other.searchParams.append(name, 'x');
      await refused(other.toString());
    }
    const extra = new URL(p.upload_url);
    extra.searchParams.append('x-amz-acl', 'public-read');
    await refused(extra.toString());
    await refused(p.upload_url.split('?')[0]!);
  });

  it('a Content-Type other than the signed one, or none', async () => {
    for (const contentType of ['image/jpeg', 'text/html', 'image/svg+xml', 'image/png; charset=utf-8', 'image/png2']) {
      expectS3Error(await put(p.upload_url, { 'content-type': contentType }), 403, ['SignatureDoesNotMatch']);
    }
    expectS3Error(await put(p.upload_url, {}), 403, ['SignatureDoesNotMatch', 'AccessDenied']);
  });

  it('the upload URL used with another method', async () => {
    const get = await rawRequest(server.url, { method: 'GET', path: pathAndQuery(p.upload_url) });
    expect(get.status).toBe(403);
    expect(get.body.toString()).toMatch(/<Error><Code>/);
  });

  it('left nothing behind, and the untouched URL still works', async () => {
    await expectNothingStored(p.s3_key);
    const ok = await put(p.upload_url);
    expect(ok.status).toBe(200);
    expect((await readFile(objectFile(server.dataDir, p.s3_key))).equals(body)).toBe(true);
  });
});

describe('expired upload URLs', () => {
  it('a URL signed in the past is refused; the same signer signing now is accepted', async () => {
    const p = await presign('image/png');
    const u = new URL(p.upload_url);
    const sign = (now: Date) =>
      testSigner.presign({
        method: 'PUT',
        origin: u.origin,
        pathSegments: ['keyframe', ...p.s3_key.split('/')],
        query: { 'x-keyframe-max-bytes': String(IMAGE_MAX) },
        headers: { 'content-type': 'image/png' },
        expiresInSeconds: 900,
        now,
      });
    const old = sign(new Date(Date.now() - 901_000));
    const res = await rawRequest(server.url, { method: 'PUT', path: pathAndQuery(old), headers: { 'content-type': 'image/png' }, body: png(100) });
    expectS3Error(res, 403, ['AccessDenied']);
    expect(res.body.toString()).toMatch(/expired/i);
    await expectNothingStored(p.s3_key);

    const fresh = sign(new Date());
    const ok = await rawRequest(server.url, { method: 'PUT', path: pathAndQuery(fresh), headers: { 'content-type': 'image/png' }, body: png(100) });
    expect(ok.status).toBe(200);
  });

  it('with KEYFRAME_UPLOAD_URL_TTL_SECONDS=1, a URL used after 2 s is refused', async () => {
    const short = await startTestServer({ KEYFRAME_UPLOAD_URL_TTL_SECONDS: '1', KEYFRAME_SIGNING_SECRET: SECRET });
    try {
      const shortKey = (await short.createKey('alice')).key;
      const p = await presign('image/png', short, shortKey);
      expect(new URL(p.upload_url).searchParams.get('X-Amz-Expires')).toBe('1');
      await new Promise((r) => setTimeout(r, 2100));
      const res = await rawRequest(short.url, { method: 'PUT', path: pathAndQuery(p.upload_url), headers: { 'content-type': 'image/png' }, body: png(100) });
      expectS3Error(res, 403, ['AccessDenied']);
      await expectNothingStored(p.s3_key, short.dataDir, short.db);
    } finally {
      await short.stop();
    }
  });
});

describe('a body over max_bytes, in process', () => {
  it('one byte over the limit', async () => {
    const p = await presign('image/png');
    const res = await rawRequest(server.url, {
      method: 'PUT',
      path: pathAndQuery(p.upload_url),
      headers: { 'content-type': 'image/png' },
      body: () => zeros(IMAGE_MAX + 1),
    });
    expectS3Error(res, 413, ['EntityTooLarge']);
    await expectNothingStored(p.s3_key);
  });
});

describe('a client that disconnects halfway', () => {
  async function until(condition: () => boolean, what: string) {
    for (let i = 0; i < 200; i++) {
      if (condition()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`timed out waiting for ${what}`);
  }

  /** Bytes in the store's temporary files (the one upload under way). */
  const tmpBytes = () => tmpFiles(server.dataDir).reduce((n, name) => n + statSync(path.join(server.dataDir, 'tmp', name)).size, 0);

  it.each([
    ['an image, with a Content-Length', 'image/png', 4 * MiB, true],
    ['an image, chunked', 'image/png', 4 * MiB, false],
    // Past 8 MiB the store has begun flushing the file while the body arrives.
    ['a video, 24 MiB of 48, with a Content-Length', 'video/mp4', 48 * MiB, true],
    ['a video, 24 MiB of 48, chunked', 'video/mp4', 48 * MiB, false],
  ])('leaves nothing visible (%s)', async (_label, contentType, declared, withLength) => {
    const p = await presign(contentType);
    const { hostname, port } = new URL(server.url);
    const socket = net.connect(Number(port), hostname);
    await once(socket, 'connect');
    socket.write(
      `PUT ${pathAndQuery(p.upload_url)} HTTP/1.1\r\nHost: ${new URL(server.url).host}\r\nContent-Type: ${contentType}\r\n` +
        (withLength ? `Content-Length: ${declared}\r\n` : 'Transfer-Encoding: chunked\r\n') +
        '\r\n',
    );
    const half = Buffer.alloc(declared / 2, 7);
    socket.write(withLength ? half : Buffer.concat([Buffer.from(`${half.length.toString(16)}\r\n`), half, Buffer.from('\r\n')]));
    // The server has written at least half of what was sent to its temporary file: the upload is really under way.
    await until(() => tmpBytes() >= declared / 4, 'the temporary file');
    socket.destroy();
    await until(() => tmpFiles(server.dataDir).length === 0, 'the temporary file to go');
    await expectNothingStored(p.s3_key);
    // The server is fine afterwards.
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });
});

describe('one writer per key, bounded uploads, 100 Continue only after every check', () => {
  /** A PUT whose headers and first bytes are sent, and then held: an upload under way. */
  async function holdPut(on: TestServer, url: string, contentType = 'image/png'): Promise<net.Socket> {
    const { hostname, port, host } = new URL(on.url);
    const socket = net.connect(Number(port), hostname);
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    socket.write(`PUT ${pathAndQuery(url)} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: ${contentType}\r\nContent-Length: 100000\r\n\r\n`);
    socket.write(Buffer.from('89504e47', 'hex'));
    return socket;
  }
  const inProgress = (on: TestServer) => (on.store as DiskStore).uploadsInProgress;
  async function until(condition: () => boolean, what: string) {
    for (let i = 0; i < 200; i++) {
      if (condition()) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`timed out waiting for ${what}`);
  }
  const fullPut = (on: TestServer, url: string, body: Buffer) =>
    rawRequest(on.url, { method: 'PUT', path: pathAndQuery(url), headers: { 'content-type': 'image/png', 'content-length': body.length }, body });

  it('a PUT to a key another PUT is writing gets 409 OperationAborted before any file is made; the first one completes', async () => {
    const p = await presign('image/png');
    const held = await holdPut(server, p.upload_url);
    try {
      await until(() => tmpFiles(server.dataDir).length === 1, 'the first PUT to be under way');
      for (let i = 0; i < 5; i++) {
        const res = await fullPut(server, p.upload_url, png(1000));
        expectS3Error(res, 409, ['OperationAborted']);
        expect(res.body.toString()).toContain('A conflicting conditional operation is currently in progress against this resource. Please try again.');
      }
      expect(tmpFiles(server.dataDir)).toHaveLength(1);
    } finally {
      held.destroy();
    }
    await until(() => tmpFiles(server.dataDir).length === 0 && inProgress(server) === 0, 'the held PUT to end');
    await expectNothingStored(p.s3_key);
    expect((await fullPut(server, p.upload_url, png(1000))).status).toBe(200);
  });

  it('a key deleted while its first body arrives stays deleted: the write is refused when it completes', async () => {
    const p = await presign('image/png');
    const held = await holdPut(server, p.upload_url);
    let answer = '';
    held.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    try {
      await until(() => tmpFiles(server.dataDir).length === 1, 'the PUT to be under way');
      // The delete does not wait for the body.
      await server.store.delete(p.s3_key);
      held.write(Buffer.alloc(100000 - 4, 1));
      await until(() => /\r\n\r\n<\?xml|^HTTP\/1\.1 200/.test(answer), 'the answer');
      expect(answer).toMatch(/^HTTP\/1\.1 403 /);
      expect(answer).toContain('<Code>AccessDenied</Code>');
    } finally {
      held.destroy();
    }
    await until(() => tmpFiles(server.dataDir).length === 0, 'the temporary file to go');
    expect(existsSync(objectFile(server.dataDir, p.s3_key))).toBe(false);
    expect(await server.store.head(p.s3_key)).toBeNull();
  });

  it('caps per user and per server answer 503 SlowDown, make no temporary file, and free up when uploads end', async () => {
    const capped = await startTestServer({ KEYFRAME_SIGNING_SECRET: SECRET, KEYFRAME_MAX_UPLOADS_PER_USER: '2', KEYFRAME_MAX_UPLOADS: '3' });
    const held: net.Socket[] = [];
    try {
      const keys = Object.fromEntries(await Promise.all(['alice', 'bob', 'carol'].map(async (u) => [u, (await capped.createKey(u)).key] as const)));
      const urls = async (user: string, n: number) => Promise.all(Array.from({ length: n }, () => presign('image/png', capped, keys[user]!)));
      const [a1, a2, a3] = await urls('alice', 3);
      const [b1] = await urls('bob', 1);
      const [c1] = await urls('carol', 1);

      held.push(await holdPut(capped, a1!.upload_url), await holdPut(capped, a2!.upload_url));
      // The store takes a slot before it opens the upload's file (a stat and an open later): wait for both, or
      // the count of temporary files below races the open (seen failing on Node 20 and 24 alike).
      await until(() => inProgress(capped) === 2 && tmpFiles(capped.dataDir).length === 2, "alice's two uploads");
      const perUser = await fullPut(capped, a3!.upload_url, png(1000));
      expectS3Error(perUser, 503, ['SlowDown']);
      expect(perUser.body.toString()).toContain('Please reduce your request rate.');
      expect(perUser.headers['x-content-type-options']).toBe('nosniff');
      expect(tmpFiles(capped.dataDir)).toHaveLength(2);

      // Bob is not held up by Alice's cap; his upload takes the server's last slot.
      held.push(await holdPut(capped, b1!.upload_url));
      await until(() => inProgress(capped) === 3 && tmpFiles(capped.dataDir).length === 3, "bob's upload");
      expectS3Error(await fullPut(capped, c1!.upload_url, png(1000)), 503, ['SlowDown']);
      expect(tmpFiles(capped.dataDir)).toHaveLength(3);

      // With Expect: 100-continue a full server answers at once, without inviting the body.
      const { port } = new URL(capped.url);
      const expecting = await rawSocketRequest(Number(port), {
        parts: [requestHead('PUT', pathAndQuery(c1!.upload_url), { 'content-type': 'image/png', 'content-length': 1000, expect: '100-continue' })],
        timeoutMs: 5000,
      });
      expect(expecting.status).toBe(503);
      expect(expecting.raw).not.toMatch(/100 Continue/i);

      for (const socket of held.splice(0)) socket.destroy();
      await until(() => inProgress(capped) === 0 && tmpFiles(capped.dataDir).length === 0, 'the held uploads to end');
      expect((await fullPut(capped, a3!.upload_url, png(1000))).status).toBe(200);
      expect((await fullPut(capped, c1!.upload_url, png(1000))).status).toBe(200);
    } finally {
      for (const socket of held) socket.destroy();
      await capped.stop();
    }
  });

  it('an absolute-form PUT with Expect: 100-continue and a bad signature gets the refusal, never 100 Continue', async () => {
    const p = await presign('image/png');
    const { port, origin } = new URL(server.url);
    const u = new URL(p.upload_url);
    const sig = u.searchParams.get('X-Amz-Signature')!;
    u.searchParams.set('X-Amz-Signature', sig.slice(0, -1) + (sig.endsWith('0') ? '1' : '0'));
    for (const target of [`${origin}${u.pathname}${u.search}`, `${u.pathname}${u.search}`]) {
      const res = await rawSocketRequest(Number(port), {
        parts: [requestHead('PUT', target, { 'content-type': 'image/png', 'content-length': 5000, expect: '100-continue' })],
        timeoutMs: 5000,
      });
      expect(res.raw, target).not.toMatch(/100 Continue/i);
      expect(res.status, res.raw).toBe(403);
      expect(res.headers['x-content-type-options']).toBe('nosniff');
    }
    await expectNothingStored(p.s3_key);

    // A good request in absolute form is invited once it passed the checks, and lands.
    const body = png(5000);
    const ok = await rawSocketRequest(Number(port), {
      parts: [requestHead('PUT', `${origin}${pathAndQuery(p.upload_url)}`, { 'content-type': 'image/png', 'content-length': body.length, expect: '100-continue', connection: 'close' }), 300, body],
      timeoutMs: 5000,
    });
    expect(ok.raw).toMatch(/^HTTP\/1\.1 100 Continue/);
    expect(ok.raw).toMatch(/HTTP\/1\.1 200 OK/);
  });

  it('directories the store makes are 0700, its files 0600', async () => {
    const p = await presign('image/png');
    expect((await fullPut(server, p.upload_url, png(1000))).status).toBe(200);
    const mode = (file: string) => statSync(file).mode & 0o777;
    for (const dir of ['objects', 'meta', 'tmp']) expect(mode(path.join(server.dataDir, dir)).toString(8), dir).toBe('700');
    const segments = p.s3_key.split('/');
    for (let i = 1; i < segments.length; i++) {
      expect(mode(path.join(server.dataDir, 'objects', ...segments.slice(0, i))).toString(8)).toBe('700');
      expect(mode(path.join(server.dataDir, 'meta', ...segments.slice(0, i))).toString(8)).toBe('700');
    }
    expect(mode(objectFile(server.dataDir, p.s3_key)).toString(8)).toBe('600');
    expect(mode(metaFile(server.dataDir, p.s3_key)).toString(8)).toBe('600');
  });
});

describe('object paths never leave the data directory', () => {
  /** A URL with a valid signature for exactly these (decoded) path segments. */
  const signed = (method: 'PUT' | 'GET', segments: string[]) =>
    testSigner.presign({
      method,
      origin: server.url,
      pathSegments: segments,
      query: method === 'PUT' ? { 'x-keyframe-max-bytes': String(IMAGE_MAX) } : {},
      headers: method === 'PUT' ? { 'content-type': 'image/png' } : {},
      expiresInSeconds: 60,
    });

  /** Every file under `dir` whose name contains `marker`. */
  const findMarker = (dir: string, marker: string) =>
    existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String).filter((p) => p.includes(marker)) : [];

  it('the test signer is the server signer: a crafted but safe key is accepted', async () => {
    const url = signed('PUT', ['keyframe', 'users', 'zed', 'crafted-safe.png']);
    const res = await rawRequest(server.url, { method: 'PUT', path: pathAndQuery(url), headers: { 'content-type': 'image/png' }, body: png(64) });
    expect(res.status).toBe(200);
    expect(existsSync(path.join(server.dataDir, 'objects', 'users', 'zed', 'crafted-safe.png'))).toBe(true);
  });

  const marker = () => `escape-${randomBytes(6).toString('hex')}`;
  const cases: [string, (m: string) => { segments: string[]; rawPath?: (signedPath: string) => string }][] = [
    ['.. segments', (m) => ({ segments: ['keyframe', 'users', '..', '..', '..', `${m}.png`] })],
    ['%2e%2e segments', (m) => ({ segments: ['keyframe', 'users', '..', '..', '..', `${m}.png`], rawPath: (p) => p.replace(/\/\.\.(?=\/)/g, '/%2e%2e') })],
    ['.%2E mixed case', (m) => ({ segments: ['keyframe', '..', `${m}.png`], rawPath: (p) => p.replace('/../', '/.%2E/') })],
    ['encoded slashes', (m) => ({ segments: ['keyframe', 'users', `../../../${m}.png`] })],
    ['encoded backslashes', (m) => ({ segments: ['keyframe', 'users', `..\\..\\..\\${m}.png`] })],
    ['an absolute path in one segment', (m) => ({ segments: ['keyframe', `/tmp/${m}.png`] })],
    ['an empty segment (//)', (m) => ({ segments: ['keyframe', '', 'tmp', `${m}.png`] })],
    ['a dot-file', (m) => ({ segments: ['keyframe', 'users', 'zed', `.${m}`] })],
    ['a dot-directory', (m) => ({ segments: ['keyframe', '.ssh', `${m}.png`] })],
    ['a single dot', (m) => ({ segments: ['keyframe', 'users', '.', `${m}.png`] })],
    ['a NUL byte', (m) => ({ segments: ['keyframe', 'users', `${m}\u0000.png`] })],
  ];

  it.each(cases)('PUT with %s is refused and writes nothing anywhere', async (_label, make) => {
    const m = marker();
    const { segments, rawPath } = make(m);
    // Not through `new URL`, which would resolve the dot segments before they reach the server.
    const [signedPath, query] = signed('PUT', segments).slice(server.url.length).split('?') as [string, string];
    const wirePath = `${rawPath ? rawPath(signedPath) : signedPath}?${query}`;
    expect(wirePath.startsWith('/')).toBe(true);
    const res = await rawRequest(server.url, { method: 'PUT', path: wirePath, headers: { 'content-type': 'image/png' }, body: png(64) });
    expectS3Error(res, 403, ['AccessDenied', 'SignatureDoesNotMatch']);
    expectNoMarker(m);
  });

  /** Wherever a traversal could have put the marker: in the data dir, beside it, at the top of /tmp or /. */
  function expectNoMarker(m: string) {
    expect(findMarker(server.dataDir, m)).toEqual([]);
    expect(readdirSync(path.dirname(server.dataDir)).filter((p) => p.includes(m))).toEqual([]);
    expect(readdirSync('/tmp').filter((p) => p.includes(m))).toEqual([]);
    expect(readdirSync('/').filter((p) => p.includes(m))).toEqual([]);
    expect(tmpFiles(server.dataDir)).toEqual([]);
  }

  it.each([
    ['another bucket', (m: string) => ['other-bucket', 'users', 'zed', `${m}.png`]],
    ['the bucket without a key', () => ['keyframe']],
  ])('PUT with %s is not a store URL at all: 404, nothing written', async (_label, make) => {
    const m = marker();
    const res = await rawRequest(server.url, {
      method: 'PUT',
      path: signed('PUT', make(m)).slice(server.url.length),
      headers: { 'content-type': 'image/png' },
      body: png(64),
    });
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body.toString())).toMatchObject({ error: 'not_found' });
    expectNoMarker(m);
  });

  it.each([
    [['keyframe', '..', 'keyframe.sqlite']],
    [['keyframe', '..', 'signing-secret']],
    [['keyframe', '..', '..', 'meta', 'users']],
    [['keyframe', `../signing-secret`]],
    [['keyframe', '/etc/passwd']],
  ])('GET of %j is refused and reveals nothing', async (segments) => {
    const res = await rawRequest(server.url, { method: 'GET', path: signed('GET', segments).slice(server.url.length) });
    expectS3Error(res, 403, ['AccessDenied', 'SignatureDoesNotMatch']);
    expect(res.body.toString()).not.toContain('SQLite format');
    expect(res.body.toString()).not.toContain(SECRET);
    expect(res.body.toString()).not.toContain('root:');
  });
});

describe('CORS for browser uploads', () => {
  it('answers a preflight from an allowed origin, and the PUT carries Access-Control-Allow-Origin', async () => {
    const p = await presign('image/png');
    const preflight = await fetch(p.upload_url, {
      method: 'OPTIONS',
      headers: { origin: ALLOWED_ORIGIN, 'access-control-request-method': 'PUT', 'access-control-request-headers': 'content-type' },
    });
    expect(preflight.status).toBeGreaterThanOrEqual(200);
    expect(preflight.status).toBeLessThan(300);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(ALLOWED_ORIGIN);
    expect(preflight.headers.get('access-control-allow-methods')).toMatch(/\bPUT\b/);
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/content-type/i);

    const res = await fetch(p.upload_url, { method: 'PUT', headers: { origin: ALLOWED_ORIGIN, 'content-type': 'image/png' }, body: png(100) });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(ALLOWED_ORIGIN);
    expect(res.headers.get('access-control-expose-headers')).toMatch(/etag/i);
    expect(res.headers.get('access-control-expose-headers')).toMatch(/content-range/i);
  });

  it('gives a refusal the CORS header too, so the page can read it', async () => {
    const p = await presign('image/png');
    const res = await fetch(p.upload_url, { method: 'PUT', headers: { origin: ALLOWED_ORIGIN, 'content-type': 'image/jpeg' }, body: png(100) });
    expect(res.status).toBe(403);
    expect(res.headers.get('access-control-allow-origin')).toBe(ALLOWED_ORIGIN);
  });

  it('does not allow other origins', async () => {
    const p = await presign('image/png');
    const preflight = await fetch(p.upload_url, {
      method: 'OPTIONS',
      headers: { origin: 'http://evil.example', 'access-control-request-method': 'PUT' },
    });
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('allows no origin when KEYFRAME_CORS_ORIGINS is unset', async () => {
    const plain = await startTestServer({ KEYFRAME_SIGNING_SECRET: SECRET });
    try {
      const p = await presign('image/png', plain, (await plain.createKey('alice')).key);
      const preflight = await fetch(p.upload_url, {
        method: 'OPTIONS',
        headers: { origin: ALLOWED_ORIGIN, 'access-control-request-method': 'PUT' },
      });
      expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await plain.stop();
    }
  });
});

describe('through a separate server process (node bin/keyframe.js serve)', () => {
  const VIDEO_BYTES = 150 * MiB;
  let child: ChildProcess;
  let database: TestDatabase;
  let dataDir: string;
  let baseUrl: string;
  let db: Db;
  let videoKey: string;

  /** Peak resident set size of the server process so far, in bytes. */
  const peakRss = () => {
    const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1];
    if (kb === undefined) throw new Error('no VmHWM in /proc status');
    return Number(kb) * 1024;
  };

  /**
   * Lets VmHWM start again from the current RSS (Linux: "5" to clear_refs), so that the peak
   * measured is the upload's, not start-up's. Where that is not allowed the start-up peak
   * stays in the baseline, which only makes the bound looser, never wrong.
   */
  const resetPeakRss = () => {
    try {
      writeFileSync(`/proc/${child.pid}/clear_refs`, '5');
    } catch (err) {
      console.warn(`could not reset the server's peak RSS (${(err as Error).message}); measuring from its start-up peak`);
    }
  };

  beforeAll(async () => {
    ensureBuilt();
    database = await testDatabase('video');
    dataDir = database.dataDir;
    const port = await new Promise<number>((resolve, reject) => {
      const probe = net.createServer().once('error', reject);
      probe.listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    baseUrl = `http://127.0.0.1:${port}`;
    child = spawn(process.execPath, [path.join(ROOT, 'bin/keyframe.js'), 'serve'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', PORT: String(port), LOG_LEVEL: 'warn', ...database.env },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    for (let i = 0; ; i++) {
      if (await fetch(`${baseUrl}/healthz`).then((r) => r.ok, () => false)) break;
      if (i === 100) throw new Error('keyframe serve did not start within 10 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    db = await database.open();
    videoKey = (await new ApiKeys(db).createKey({ userId: 'victor' })).key;
  });
  afterAll(async () => {
    child?.kill('SIGTERM');
    if (child && child.exitCode === null) await once(child, 'exit');
    await db?.destroy();
    await database?.dispose();
  });

  const presignOnChild = async (contentType: string) => {
    const res = await fetch(`${baseUrl}/api/s3/presign-upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${videoKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'upload', contentType }),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as Presigned;
  };
  const presignVideo = () => presignOnChild('video/mp4');

    describe('a 21 MB image: 413, nothing stored', () => {
    const tooBig = 21 * MiB;

    it('curl with an honest Content-Length (from a file)', async () => {
      const p = await presignOnChild('image/png');
      const dir = mkdtempSync(path.join(tmpdir(), 'keyframe-file-'));
      const file = path.join(dir, 'big.png');
      writeFileSync(file, Buffer.alloc(tooBig));
      try {
        // curl sends `Expect: 100-continue` for a body this large: the refusal must come instead of the invitation.
        const res = await curl(['-X', 'PUT', '--data-binary', `@${file}`, '-H', 'Content-Type: image/png', p.upload_url]);
        expect(res.status, res.body).toBe(413);
        expect(res.headers).not.toMatch(/100 Continue/i);
        expect(res.body).toMatch(/<Error><Code>EntityTooLarge<\/Code>/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      await expectNothingStored(p.s3_key, dataDir, db);
    });

    it('a client that sends an honest Content-Length without Expect: 100-continue (as browsers do)', async () => {
      const p = await presignOnChild('image/png');
      const res = await rawRequest(baseUrl, {
        method: 'PUT',
        path: pathAndQuery(p.upload_url),
        headers: { 'content-type': 'image/png', 'content-length': tooBig },
        body: () => zeros(tooBig),
        keepAlive: true,
      });
      expectS3Error(res, 413, ['EntityTooLarge']);
      // The server discards the unread body and keeps the connection: closing it with bytes
      // still arriving resets it, and the client would lose the answer (a race, so checked here).
      expect(res.headers.connection).toBe('keep-alive');
      await expectNothingStored(p.s3_key, dataDir, db);
    });

    it('a chunked body (no Content-Length) from node:http', async () => {
      const p = await presignOnChild('image/png');
      const res = await rawRequest(baseUrl, {
        method: 'PUT',
        path: pathAndQuery(p.upload_url),
        headers: { 'content-type': 'image/png' },
        body: () => zeros(tooBig),
      });
      expectS3Error(res, 413, ['EntityTooLarge']);
      await expectNothingStored(p.s3_key, dataDir, db);
    });

    it('a chunked body from curl reading a pipe', async () => {
      const p = await presignOnChild('image/png');
      const res = await curl(['-X', 'PUT', '-T', '-', '-H', 'Content-Type: image/png', p.upload_url], () => zeros(tooBig));
      expect(res.status, res.body).toBe(413);
      expect(res.headers).toMatch(/transfer-encoding|HTTP\/1\.1 413/i);
      expect(res.body).toMatch(/<Error><Code>EntityTooLarge<\/Code>/);
      await expectNothingStored(p.s3_key, dataDir, db);
    });
  });

  /** `total` bytes, different in every MiB, streamed from a generator; `hash` sees each chunk. */
  function videoStream(total: number, hash: ReturnType<typeof createHash>): ReadableStream<Uint8Array> {
    let sent = 0;
    const block = randomBytes(MiB);
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= total) return controller.close();
        const chunk = Buffer.from(block.subarray(0, Math.min(MiB, total - sent)));
        chunk.writeUInt32BE(sent / MiB, 0);
        sent += chunk.length;
        hash.update(chunk);
        controller.enqueue(chunk);
      },
    });
  }

  const upload = async (url: string, total: number, hash: ReturnType<typeof createHash>) =>
    fetch(url, { method: 'PUT', headers: { 'content-type': 'video/mp4' }, body: videoStream(total, hash), duplex: 'half' } as RequestInit);

  it('a 150 MB video is accepted while the server’s peak memory grows by less than 64 MB', async () => {
    // Warm up every code path first, so that what is measured is the upload itself.
    const warm = await presignVideo();
    expect((await upload(warm.upload_url, 4 * MiB, createHash('sha256'))).status).toBe(200);

    const p = await presignVideo();
    resetPeakRss();
    const before = peakRss();
    const hash = createHash('sha256');
    const res = await upload(p.upload_url, VIDEO_BYTES, hash);
    expect(res.status, await res.text()).toBe(200);
    const growth = peakRss() - before;

    const digest = hash.digest('hex');
    expect(statSync(objectFile(dataDir, p.s3_key)).size).toBe(VIDEO_BYTES);
    const row = await stateOf(p.s3_key, db);
    expect(row).toMatchObject({ state: 'uploaded', size: VIDEO_BYTES, sha256: digest });
    const onDisk = createHash('sha256');
    for await (const chunk of createReadStream(objectFile(dataDir, p.s3_key))) onDisk.update(chunk as Buffer);
    expect(onDisk.digest('hex')).toBe(digest);

    console.info(`server peak RSS growth during a ${VIDEO_BYTES / MiB} MiB upload: ${(growth / MiB).toFixed(1)} MiB`);
    expect(growth).toBeLessThan(64 * MiB);
  });
});
