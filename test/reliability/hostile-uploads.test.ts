import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { eventually, expectEnvelope4xx, expectS3Refusal, filesUnder } from './support/checks.js';
import { rawRequest, requestHead } from './support/raw-http.js';

/**
 * Hostile uploads against the embedded store: every mutation of a valid upload
 * URL, replays, slow and broken bodies, lying lengths, oversized chunked bodies.
 * After each: the disk (objects/, meta/, tmp/) holds only what should be there
 * and the upload record says what happened.
 */
let server: TestServer;
let port: number;
let key: string;
let bobKey: string;

beforeAll(async () => {
  server = await startTestServer();
  port = Number(new URL(server.url).port);
  key = (await server.createKey('alice')).key;
  bobKey = (await server.createKey('bob')).key;
});

afterAll(async () => {
  await server?.stop();
});

interface Presigned {
  s3_key: string;
  upload_url: string;
  max_bytes: number;
}

async function presign(contentType = 'image/png', extra: Record<string, unknown> = {}, apiKey = key): Promise<Presigned> {
  const res = await server.api('POST', '/api/s3/presign-upload', { key: apiKey, body: { kind: 'upload', contentType, ...extra } });
  expect(res.status).toBe(200);
  return res.body as Presigned;
}

/** Path and query of an upload URL exactly as written (no URL parser normalising `..` away). */
const target = (url: string) => url.slice(url.indexOf('/', url.indexOf('//') + 2));

const PNG = Buffer.concat([Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'), Buffer.alloc(4000, 7)]);

async function record(s3Key: string) {
  return server.db.selectFrom('uploads').selectAll().where('s3_key', '=', s3Key).executeTakeFirstOrThrow();
}

/** Asserts that nothing of `s3Key` is on disk, no temporary file is left, and the record is still pending. */
async function expectNothingStored(s3Key: string, context: string): Promise<void> {
  const tmpEmpty = await eventually(async () => (await filesUnder(path.join(server.dataDir, 'tmp'))).length === 0);
  expect(tmpEmpty, `${context}: tmp/ empty, has ${(await filesUnder(path.join(server.dataDir, 'tmp'))).join(', ')}`).toBe(true);
  const objects = await filesUnder(path.join(server.dataDir, 'objects'));
  const meta = await filesUnder(path.join(server.dataDir, 'meta'));
  expect(objects.filter((f) => f.startsWith(s3Key)), `${context}: objects/`).toEqual([]);
  expect(meta.filter((f) => f.startsWith(s3Key)), `${context}: meta/`).toEqual([]);
  const row = await record(s3Key);
  expect(row.state, `${context}: record state`).toBe('pending');
  expect(row.size, `${context}: record size`).toBeNull();
  expect(row.sha256, `${context}: record sha256`).toBeNull();
}

/** Every object on disk has a meta sidecar and an `uploaded` record whose size and checksum match the bytes. */
async function expectStoreMatchesRecords(): Promise<void> {
  const objectsDir = path.join(server.dataDir, 'objects');
  for (const file of await filesUnder(objectsDir)) {
    const bytes = await readFile(path.join(objectsDir, file));
    const row = await record(file);
    expect(['uploaded', 'verified', 'rejected'], `${file}: state`).toContain(row.state);
    expect(Number(row.size), `${file}: size`).toBe(bytes.length);
    expect(row.sha256, `${file}: sha256`).toBe(createHash('sha256').update(bytes).digest('hex'));
  }
}

async function put(url: string, body: Buffer, headers: Record<string, string | number> = {}, method = 'PUT') {
  return rawRequest(port, {
    parts: [requestHead(method, target(url), { 'content-type': 'image/png', 'content-length': body.length, ...headers }), body],
    timeoutMs: 10_000,
  });
}

describe('hostile uploads', () => {
  it('every mutation of a valid upload URL is refused and stores nothing', async () => {
    const base = await presign('image/png', { contentLength: PNG.length });
    const params = [...new URL(base.upload_url).searchParams.keys()];
    expect(params.length).toBeGreaterThanOrEqual(6);

    const mutations: { name: string; url: (u: URL) => string; headers?: Record<string, string | number>; method?: string }[] = [];
    const flip = (v: string) => (v.length === 0 ? 'x' : v.slice(0, -1) + (v.at(-1) === 'a' ? 'b' : 'a'));
    for (const p of params) {
      mutations.push({ name: `${p} changed`, url: (u) => (u.searchParams.set(p, flip(u.searchParams.get(p)!)), u.toString()) });
      mutations.push({ name: `${p} dropped`, url: (u) => (u.searchParams.delete(p), u.toString()) });
      mutations.push({ name: `${p} duplicated`, url: (u) => `${u.toString()}&${encodeURIComponent(p)}=${encodeURIComponent(u.searchParams.get(p)!)}` });
    }
    mutations.push(
      { name: 'extra parameter', url: (u) => `${u.toString()}&x-extra=1` },
      { name: 'X-Amz-Expires raised', url: (u) => (u.searchParams.set('X-Amz-Expires', '604800'), u.toString()) },
      { name: 'max bytes raised', url: (u) => (u.searchParams.set('x-keyframe-max-bytes', '209715200'), u.toString()) },
      { name: 'query dropped', url: (u) => u.origin + u.pathname },
      { name: 'key of another user', url: (u) => ((u.pathname = u.pathname.replace('/users/alice/', '/users/bob/')), u.toString()) },
      { name: 'other file id', url: (u) => ((u.pathname = u.pathname.replace(/file_[^.]+/, 'file_AAAAAAAAAAAAAAAAAAAAAA')), u.toString()) },
      { name: 'other extension', url: (u) => ((u.pathname = u.pathname.replace(/\.png$/, '.html')), u.toString()) },
      { name: 'extra path segment', url: (u) => ((u.pathname = u.pathname.replace('/user-uploads/', '/user-uploads/x/')), u.toString()) },
      { name: 'traversal segment', url: (u) => u.toString().replace('/user-uploads/', '/user-uploads/../user-uploads/') },
      { name: 'encoded traversal', url: (u) => u.toString().replace('/user-uploads/', '/user-uploads/%2e%2e/') },
      { name: 'other bucket', url: (u) => ((u.pathname = u.pathname.replace(/^\/[^/]+\//, '/other/')), u.toString()) },
      { name: 'case changed', url: (u) => ((u.pathname = u.pathname.replace('/users/alice/', '/users/Alice/')), u.toString()) },
      { name: 'Content-Type header removed', url: (u) => u.toString(), headers: { 'content-type': '' } },
      { name: 'other Content-Type', url: (u) => u.toString(), headers: { 'content-type': 'image/jpeg' } },
      { name: 'Content-Type with parameters', url: (u) => u.toString(), headers: { 'content-type': 'text/html' } },
      { name: 'signed Content-Length differs', url: (u) => u.toString(), headers: { 'content-length': PNG.length - 1 } },
      { name: 'method GET', url: (u) => u.toString(), method: 'GET' },
      { name: 'method POST', url: (u) => u.toString(), method: 'POST' },
      { name: 'method DELETE', url: (u) => u.toString(), method: 'DELETE' },
      { name: 'method PATCH', url: (u) => u.toString(), method: 'PATCH' },
    );

    for (const m of mutations) {
      const fresh = await presign('image/png', { contentLength: PNG.length });
      const url = m.url(new URL(fresh.upload_url));
      const headers: Record<string, string | number> = { 'content-type': 'image/png', 'content-length': PNG.length, ...m.headers };
      if (headers['content-type'] === '') delete headers['content-type'];
      const body = m.method === 'GET' ? Buffer.alloc(0) : PNG.subarray(0, Number(headers['content-length']));
      if (m.method === 'GET') headers['content-length'] = 0;
      const res = await rawRequest(port, { parts: [requestHead(m.method ?? 'PUT', target(url), headers), body], timeoutMs: 10_000 });
      expect(res.status, `${m.name}: answered`).toBeGreaterThan(0);
      if (res.headers['content-type']?.includes('json')) {
        // A path the object routes do not serve (another bucket) is an unknown route.
        expect(res.status, `${m.name}: ${res.body}`).toBe(404);
      } else {
        expectS3Refusal(res.status, res.body, m.name, m.method ?? 'PUT');
      }
      await expectNothingStored(fresh.s3_key, m.name);
    }
    await expectStoreMatchesRecords();
  });

  it('an expired URL is refused and stores nothing', async () => {
    const short = await startTestServer({ KEYFRAME_UPLOAD_URL_TTL_SECONDS: '1' });
    try {
      const k = (await short.createKey('carol')).key;
      const res = await short.api('POST', '/api/s3/presign-upload', { key: k, body: { kind: 'upload', contentType: 'image/png' } });
      await new Promise((r) => setTimeout(r, 2200));
      const put = await fetch(res.body.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: PNG });
      expect(expectS3Refusal(put.status, await put.text(), 'expired')).toBe('AccessDenied');
      expect(await filesUnder(path.join(short.dataDir, 'objects'))).toEqual([]);
      const row = await short.db.selectFrom('uploads').selectAll().where('s3_key', '=', res.body.s3_key).executeTakeFirstOrThrow();
      expect(row.size).toBeNull();
      expect(['pending', 'expired']).toContain(row.state);
    } finally {
      await short.stop();
    }
  });

  it('a valid upload lands once; a replay with other bytes is refused, one with the same bytes succeeds', async () => {
    const p = await presign();
    const first = await put(p.upload_url, PNG);
    expect(first.status).toBe(200);
    const firstRow = await record(p.s3_key);
    expect(firstRow.state).toBe('uploaded');
    expect(firstRow.sha256).toBe(createHash('sha256').update(PNG).digest('hex'));

    // Replay with other bytes: the URL is still valid, but the store writes each key once.
    const other = Buffer.concat([PNG.subarray(0, 16), Buffer.alloc(3000, 9)]);
    const replay = await put(p.upload_url, other);
    expect(expectS3Refusal(replay.status, replay.body, 'replay with other bytes')).toBe('AccessDenied');
    expect(await record(p.s3_key)).toEqual(firstRow);
    expect((await readFile(path.join(server.dataDir, 'objects', p.s3_key))).equals(PNG)).toBe(true);

    // A replay that fails (too large) leaves the stored object and its record as they were.
    const tooBig = await put(p.upload_url, Buffer.alloc(p.max_bytes + 1, 1));
    expect(expectS3Refusal(tooBig.status, tooBig.body, 'replay over the limit')).toBe('EntityTooLarge');
    expect((await readFile(path.join(server.dataDir, 'objects', p.s3_key))).equals(PNG)).toBe(true);
    expect(await record(p.s3_key)).toEqual(firstRow);

    // The same bytes again (a client whose first answer was lost): 200, the same ETag, nothing changes.
    const retry = await put(p.upload_url, PNG);
    expect(retry.status).toBe(200);
    expect(retry.headers.etag).toBe(first.headers.etag);
    expect(await record(p.s3_key)).toEqual(firstRow);
    expect(await eventually(async () => (await filesUnder(path.join(server.dataDir, 'tmp'))).length === 0)).toBe(true);
    await expectStoreMatchesRecords();
  });

  it('slow-loris bodies neither block other clients nor leave anything behind', async () => {
    const slow = await Promise.all(Array.from({ length: 20 }, () => presign()));
    // 20 clients trickle 1 byte every 100 ms for ~2 s, then vanish.
    const trickles = slow.map((p) =>
      rawRequest(port, {
        parts: [requestHead('PUT', target(p.upload_url), { 'content-type': 'image/png', 'content-length': 1000 }), ...Array.from({ length: 20 }, () => [Buffer.from('x'), 100]).flat()],
        destroy: true,
        timeoutMs: 10_000,
      }),
    );
    await new Promise((r) => setTimeout(r, 500));
    // Meanwhile another user's client presigns and uploads (alice's own are capped at
    // KEYFRAME_MAX_UPLOADS_PER_USER concurrent PUTs: her trickles past 8 are refused with 503).
    const p = await presign('image/png', {}, bobKey);
    const ok = await put(p.upload_url, PNG);
    expect(ok.status).toBe(200);
    await Promise.all(trickles);
    for (const s of slow) await expectNothingStored(s.s3_key, 'slow-loris');
    await expectStoreMatchesRecords();
  });

  it('a body that stops halfway stores nothing', async () => {
    const p = await presign();
    const res = await rawRequest(port, {
      parts: [requestHead('PUT', target(p.upload_url), { 'content-type': 'image/png', 'content-length': 200_000 }), Buffer.alloc(100_000, 3)],
      destroy: true,
    });
    expect(res.status).toBe(0);
    await expectNothingStored(p.s3_key, 'halfway');
  });

  it('Content-Length longer than the body, then end of stream: nothing stored', async () => {
    const p = await presign();
    const res = await rawRequest(port, {
      parts: [requestHead('PUT', target(p.upload_url), { 'content-type': 'image/png', 'content-length': PNG.length * 2 }), PNG],
      end: true,
      timeoutMs: 5000,
    });
    // Broken framing is judged by Node's HTTP parser, before any route: the envelope, not S3 XML.
    if (res.status !== 0) expectEnvelope4xx(res.status, res.body, 'long Content-Length');
    await expectNothingStored(p.s3_key, 'long Content-Length');
  });

  it('Content-Length shorter than the body: exactly the declared bytes are stored and recorded', async () => {
    const p = await presign();
    const declared = 1000;
    const res = await rawRequest(port, {
      parts: [requestHead('PUT', target(p.upload_url), { 'content-type': 'image/png', 'content-length': declared }), PNG],
      timeoutMs: 5000,
    });
    // HTTP frames the body by Content-Length: the rest is a (broken) next request, which
    // may close the connection before the upload's answer is written. Either the declared
    // bytes are stored and recorded, or nothing is: never more, never a mismatch.
    expect([0, 200, 400]).toContain(res.status);
    await eventually(async () => (await record(p.s3_key)).state !== 'pending', 2000);
    const row = await record(p.s3_key);
    if (row.state === 'pending') {
      await expectNothingStored(p.s3_key, 'short Content-Length');
    } else {
      expect(row.state).toBe('uploaded');
      expect(Number(row.size)).toBe(declared);
      expect((await readFile(path.join(server.dataDir, 'objects', p.s3_key))).equals(PNG.subarray(0, declared))).toBe(true);
    }
    await expectStoreMatchesRecords();
  });

  it('Content-Length shorter than a signed contentLength is refused', async () => {
    const p = await presign('image/png', { contentLength: PNG.length });
    const res = await put(p.upload_url, PNG.subarray(0, 1000));
    expectS3Refusal(res.status, res.body, 'short signed length');
    await expectNothingStored(p.s3_key, 'short signed length');
  });

  it('a declared Content-Length over max_bytes is refused before the body', async () => {
    const p = await presign();
    const res = await rawRequest(port, {
      parts: [requestHead('PUT', target(p.upload_url), { 'content-type': 'image/png', 'content-length': p.max_bytes + 1 }), Buffer.alloc(1000)],
      timeoutMs: 5000,
    });
    expect(expectS3Refusal(res.status, res.body, 'declared too large')).toBe('EntityTooLarge');
    await expectNothingStored(p.s3_key, 'declared too large');
  });

  it('a chunked body over the limit is cut off with 413 and stores nothing', async () => {
    const p = await presign();
    const chunk = Buffer.alloc(1024 * 1024, 5);
    const framed = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]);
    // 21 chunks of 1 MiB: 21 MiB against a 20 MiB limit, then the terminating chunk.
    const parts: (Buffer | string)[] = [requestHead('PUT', target(p.upload_url), { 'content-type': 'image/png', 'transfer-encoding': 'chunked' })];
    for (let i = 0; i < 21; i++) parts.push(framed);
    parts.push('0\r\n\r\n');
    const res = await rawRequest(port, { parts, timeoutMs: 20_000 });
    expect(expectS3Refusal(res.status, res.body, 'chunked over the limit')).toBe('EntityTooLarge');
    await expectNothingStored(p.s3_key, 'chunked over the limit');
  });

  it('two uploads to one URL at the same time leave one whole object that matches its record', async () => {
    const p = await presign();
    const a = Buffer.concat([PNG, Buffer.alloc(200_000, 1)]);
    const b = Buffer.concat([PNG, Buffer.alloc(300_000, 2)]);
    const [ra, rb] = await Promise.all([put(p.upload_url, a), put(p.upload_url, b)]);
    // One writer per key, written once: one wins, the other is refused (409 while the first writes, 403 after).
    expect([ra.status, rb.status].filter((s) => s === 200)).toHaveLength(1);
    for (const r of [ra, rb]) if (r.status !== 200) expect(['OperationAborted', 'AccessDenied']).toContain(expectS3Refusal(r.status, r.body, 'the losing PUT'));
    const stored = await readFile(path.join(server.dataDir, 'objects', p.s3_key));
    expect(stored.equals(ra.status === 200 ? a : b)).toBe(true);
    await expectStoreMatchesRecords();
  });
});
