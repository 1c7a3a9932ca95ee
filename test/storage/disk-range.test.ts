import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rangeOf } from '../../src/storage/disk/disk-store.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/**
 * Range requests on the disk store's presigned GETs (RFC 9110 §14), so that a
 * <video> can seek in a video the disk store serves: real HTTP, fetch and curl.
 */

const SIZE = 1024 * 1024;
let server: TestServer;
let bytes: Buffer;
let url: string;
let etag: string;
let key: string;

beforeAll(async () => {
  server = await startTestServer();
  bytes = randomBytes(SIZE);
  key = `users/alice/generations/gen_range${randomBytes(6).toString('hex')}.mp4`;
  await server.store.put(key, Readable.from([bytes]), 'video/mp4');
  url = await server.store.presignGet(key, 300);
  etag = (await server.store.head(key))!.etag!;
});
afterAll(async () => server?.stop());

async function get(headers: Record<string, string> = {}, method = 'GET', target = url) {
  const res = await fetch(target, { method, headers });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

/** The headers every successful answer keeps, ranged or not. */
function expectObjectHeaders(headers: Headers) {
  expect(headers.get('accept-ranges')).toBe('bytes');
  expect(headers.get('x-content-type-options')).toBe('nosniff');
  expect(headers.get('content-type')).toBe('video/mp4');
  expect(headers.get('content-disposition')).toBe('inline');
  expect(headers.get('etag')).toBe(etag);
}

describe('Range on disk store GETs', () => {
  it('bytes=0-99: 206 with the first 100 bytes', async () => {
    const res = await get({ range: 'bytes=0-99' });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes 0-99/${SIZE}`);
    expect(res.headers.get('content-length')).toBe('100');
    expectObjectHeaders(res.headers);
    expect(res.body.equals(bytes.subarray(0, 100))).toBe(true);
  });

  it('bytes=1048000-: 206 with the tail', async () => {
    const res = await get({ range: 'bytes=1048000-' });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes 1048000-${SIZE - 1}/${SIZE}`);
    expect(res.headers.get('content-length')).toBe(String(SIZE - 1048000));
    expectObjectHeaders(res.headers);
    expect(res.body.equals(bytes.subarray(1048000))).toBe(true);
  });

  it('bytes=-10: 206 with the last 10 bytes', async () => {
    const res = await get({ range: 'bytes=-10' });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes ${SIZE - 10}-${SIZE - 1}/${SIZE}`);
    expect(res.headers.get('content-length')).toBe('10');
    expect(res.body.equals(bytes.subarray(SIZE - 10))).toBe(true);
  });

  it('a range from the middle, and one past the end clamped to the last byte', async () => {
    const mid = await get({ range: 'bytes=500000-500999' });
    expect(mid.status).toBe(206);
    expect(mid.body.equals(bytes.subarray(500000, 501000))).toBe(true);
    const clamped = await get({ range: `bytes=${SIZE - 5}-${SIZE * 4}` });
    expect(clamped.status).toBe(206);
    expect(clamped.headers.get('content-range')).toBe(`bytes ${SIZE - 5}-${SIZE - 1}/${SIZE}`);
    expect(clamped.body.equals(bytes.subarray(SIZE - 5))).toBe(true);
  });

  it.each(['bytes=2000000-', `bytes=${SIZE}-`, 'bytes=-0'])('%s: 416 with Content-Range: bytes */size', async (range) => {
    const res = await get({ range });
    expect(res.status).toBe(416);
    expect(res.headers.get('content-range')).toBe(`bytes */${SIZE}`);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-type')).toMatch(/^application\/xml/);
    expect(res.body.toString()).toContain('<Code>InvalidRange</Code>');
  });

  it.each(['bytes=0-1,5-6', 'bytes=0-1, -5', 'bytes=5-3', 'bytes=abc', 'bytes=', 'items=0-99', 'bytes 0-99'])(
    '%s (several ranges or malformed) is ignored: 200 with the whole body',
    async (range) => {
      const res = await get({ range });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-range')).toBeNull();
      expect(res.headers.get('content-length')).toBe(String(SIZE));
      expectObjectHeaders(res.headers);
      expect(res.body.equals(bytes)).toBe(true);
    },
  );

  it('no Range: 200, the whole body, Accept-Ranges: bytes', async () => {
    const res = await get();
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(SIZE));
    expect(res.headers.get('content-range')).toBeNull();
    expectObjectHeaders(res.headers);
    expect(res.body.equals(bytes)).toBe(true);
  });

  it('HEAD says Accept-Ranges and the full length, and ignores a Range', async () => {
    for (const headers of [{}, { range: 'bytes=0-99' }] as Record<string, string>[]) {
      const res = await get(headers, 'HEAD');
      expect(res.status).toBe(200);
      expectObjectHeaders(res.headers);
      expect(res.headers.get('content-length')).toBe(String(SIZE));
      expect(res.headers.get('content-range')).toBeNull();
      expect(res.body.length).toBe(0);
    }
  });

  it('If-Range: the object\'s ETag keeps the range; another tag, a weak tag or a date gets the whole body', async () => {
    const kept = await get({ range: 'bytes=0-9', 'if-range': etag });
    expect(kept.status).toBe(206);
    expect(kept.body.equals(bytes.subarray(0, 10))).toBe(true);
    for (const ifRange of [`"${'0'.repeat(32)}"`, `W/${etag}`, new Date().toUTCString()]) {
      const whole = await get({ range: 'bytes=0-9', 'if-range': ifRange });
      expect(whole.status, ifRange).toBe(200);
      expect(whole.body.equals(bytes)).toBe(true);
    }
  });

  it('a range request with a bad signature is refused as before; a missing key is 404', async () => {
    const tampered = url.replace(/X-Amz-Signature=([0-9a-f])/, (_m, c: string) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`);
    for (const range of ['bytes=0-99', 'bytes=2000000-']) {
      const res = await get({ range }, 'GET', tampered);
      expect(res.status).toBe(403);
      expect(res.body.toString()).toContain('<Code>SignatureDoesNotMatch</Code>');
      expect(res.headers.get('content-range')).toBeNull();
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    }
    const missing = await get({ range: 'bytes=0-99' }, 'GET', await server.store.presignGet(`users/alice/generations/gen_missing${randomBytes(6).toString('hex')}.mp4`, 60));
    expect(missing.status).toBe(404);
    expect(missing.body.toString()).toContain('<Code>NoSuchKey</Code>');
    expect(missing.headers.get('content-range')).toBeNull();
  });

  it('no descriptor of the object stays open after HEADs, 416s, 206s and a range cut off mid-way', async () => {
    for (let i = 0; i < 10; i++) {
      await get({}, 'HEAD');
      await get({ range: 'bytes=2000000-' });
      await get({ range: 'bytes=10-20' });
    }
    const controller = new AbortController();
    const res = await fetch(url, { headers: { range: 'bytes=0-' }, signal: controller.signal });
    expect(res.status).toBe(206);
    const reader = res.body!.getReader();
    await reader.read();
    controller.abort();
    await reader.read().catch(() => undefined);
    await expect.poll(() => openObjectFiles(), { timeout: 5000 }).toBe(0);
    // The count sees an open object file at all.
    const handle = await open(path.join(server.dataDir, 'objects', key), 'r');
    expect(openObjectFiles()).toBe(1);
    await handle.close();
  });

  it('curl -r 0-99 gets 206 and the first 100 bytes', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'keyframe-range-'));
    try {
      const out = path.join(dir, 'body');
      const { code, stdout } = await run('curl', ['-sS', '--max-time', '30', '-r', '0-99', '-D', '-', '-o', out, url]);
      expect(code).toBe(0);
      expect(stdout).toMatch(/^HTTP\/1\.1 206 /);
      expect(stdout).toMatch(new RegExp(`^content-range: bytes 0-99/${SIZE}\\r?$`, 'im'));
      expect(stdout).toMatch(/^accept-ranges: bytes\r?$/im);
      expect(readFileSync(out).equals(bytes.subarray(0, 100))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an empty object: a suffix range gets 200 and nothing, a first-byte range 416 bytes */0', async () => {
    const key = `users/alice/generations/gen_empty${randomBytes(6).toString('hex')}.mp4`;
    await server.store.put(key, Readable.from([]), 'video/mp4');
    const empty = await server.store.presignGet(key, 60);
    const suffix = await get({ range: 'bytes=-10' }, 'GET', empty);
    expect(suffix.status).toBe(200);
    expect(suffix.body.length).toBe(0);
    const first = await get({ range: 'bytes=0-' }, 'GET', empty);
    expect(first.status).toBe(416);
    expect(first.headers.get('content-range')).toBe('bytes */0');
  });
});

describe('rangeOf', () => {
  const info = { size: 1000, etag: '"abc"' };
  it.each<[string, string | undefined, ReturnType<typeof rangeOf>]>([
    ['bytes=0-0', undefined, { start: 0, end: 0 }],
    ['Bytes=10-19', undefined, { start: 10, end: 19 }],
    ['bytes=0-99,', undefined, { start: 0, end: 99 }],
    ['bytes=990-', undefined, { start: 990, end: 999 }],
    ['bytes=-5000', undefined, { start: 0, end: 999 }],
    ['bytes=0-99999999999999999999999', undefined, { start: 0, end: 999 }],
    ['bytes=99999999999999999999999-', undefined, 'unsatisfiable'],
    ['bytes=1000-1000', undefined, 'unsatisfiable'],
    ['bytes=-0', undefined, 'unsatisfiable'],
    ['bytes=5-3', undefined, null],
    ['bytes=- 5', undefined, null],
    ['bytes=0-1,2-3', undefined, null],
    ['bytes=-1-2', undefined, null],
    ['bytes=0-9', '"abc"', { start: 0, end: 9 }],
    ['bytes=0-9', '"abd"', null],
    ['bytes=0-9', 'W/"abc"', null],
  ])('%s (If-Range %s) → %j', (value, ifRange, expected) => {
    expect(rangeOf(value, ifRange, info)).toEqual(expected);
  });
  it('no header: null', () => expect(rangeOf(undefined, undefined, info)).toBeNull());
});

/** Descriptors of this process (the server runs in it) open on files of the store's objects dir. */
function openObjectFiles(): number {
  const objects = path.join(realpathSync(server.dataDir), 'objects') + path.sep;
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith(objects);
    } catch {
      return false;
    }
  }).length;
}

function run(cmd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
