import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { refuseInserts } from '../helpers/database.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const PRESIGN = '/api/s3/presign-upload';
const INVALID_KEY = 'Invalid or missing API key';

let server: TestServer;
let key: string;

beforeAll(async () => {
  server = await startTestServer();
  key = (await server.createKey('alice')).key;
});
afterAll(async () => server?.stop());

/** A raw request over real HTTP: the body goes on the wire exactly as given. */
async function send(init: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer }) {
  const res = await fetch(server.url + (init.path ?? PRESIGN), {
    method: init.method ?? 'POST',
    headers: init.headers,
    body: typeof init.body === 'string' || init.body === undefined ? init.body : new Uint8Array(init.body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text };
}

const withKey = (headers: Record<string, string> = {}) => ({ authorization: `Bearer ${key}`, ...headers });
const json = { 'content-type': 'application/json' };

/** Asserts the one error envelope: exactly `{error, message}`, JSON, nothing internal. */
function expectEnvelope(res: { status: number; headers: Headers; text: string }, status: number, code: string, message?: string | RegExp) {
  expect(res.status, res.text).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = JSON.parse(res.text) as Record<string, unknown>;
  expect(Object.keys(body).sort()).toEqual(['error', 'message']);
  expect(body.error).toBe(code);
  expect(typeof body.message).toBe('string');
  expect((body.message as string).length).toBeGreaterThan(0);
  if (message !== undefined) expect(body.message).toMatch(message);
  expect(res.text).not.toMatch(/\bat .*\.(ts|js):\d+|node_modules|SELECT |sqlite/i);
  return body;
}

const presign = (body: unknown) => send({ headers: withKey(json), body: JSON.stringify(body) });

describe('POST /api/s3/presign-upload: 400 validation_error', () => {
  it.each([
    ['kind is another value', { kind: 'video', contentType: 'image/png' }],
    ['kind is empty', { kind: '', contentType: 'image/png' }],
    ['kind differs in case', { kind: 'Upload', contentType: 'image/png' }],
    ['kind is missing', { contentType: 'image/png' }],
  ])('invalid kind: %s', async (_label, body) => {
    expectEnvelope(await presign(body), 400, 'validation_error', /kind/);
  });

  it.each([
    'image/svg+xml',
    'text/html',
    'text/html; charset=utf-8',
    'application/javascript',
    'text/javascript',
    'application/xhtml+xml',
    'application/pdf',
    'application/octet-stream',
    'image/x-icon',
    'video/x-msvideo',
    'image/png/extra',
    'png',
    '',
  ])('unsupported contentType %j', async (contentType) => {
    expectEnvelope(await presign({ kind: 'upload', contentType }), 400, 'validation_error', /contentType/);
  });

  it('missing contentType', async () => {
    expectEnvelope(await presign({ kind: 'upload' }), 400, 'validation_error', /contentType/);
  });

  it.each([
    ['truncated JSON', '{"kind":"upload","contentType":'],
    ['trailing garbage', '{"kind":"upload","contentType":"image/png"} x'],
    ['single quotes', "{'kind':'upload'}"],
    ['not JSON at all', 'kind=upload&contentType=image/png'],
  ])('malformed JSON body: %s', async (_label, body) => {
    expectEnvelope(await send({ headers: withKey(json), body }), 400, 'validation_error');
  });

  it.each([
    ['a JSON array', '[{"kind":"upload","contentType":"image/png"}]'],
    ['a JSON string', '"upload"'],
    ['JSON null', 'null'],
    ['a JSON number', '42'],
  ])('a body that is %s', async (_label, body) => {
    expectEnvelope(await send({ headers: withKey(json), body }), 400, 'validation_error');
  });

  it.each([
    ['text/plain', '{"kind":"upload","contentType":"image/png"}'],
    ['application/x-www-form-urlencoded', 'kind=upload&contentType=image%2Fpng'],
    ['multipart/form-data; boundary=x', '--x\r\nContent-Disposition: form-data; name="kind"\r\n\r\nupload\r\n--x--\r\n'],
    ['image/png', '\x89PNG\r\n'],
  ])('a non-JSON body (Content-Type %s)', async (contentType, body) => {
    expectEnvelope(await send({ headers: withKey({ 'content-type': contentType }), body }), 400, 'validation_error');
  });

  it('a JSON body without any Content-Type', async () => {
    const body = Buffer.from('{"kind":"upload","contentType":"image/png"}');
    expectEnvelope(await send({ headers: withKey(), body }), 400, 'validation_error');
  });

  it('an empty body, with and without a JSON Content-Type', async () => {
    expectEnvelope(await send({ headers: withKey(json), body: '' }), 400, 'validation_error');
    expectEnvelope(await send({ headers: withKey() }), 400, 'validation_error');
  });

  it.each([
    ['kind a number', { kind: 1, contentType: 'image/png' }],
    ['kind null', { kind: null, contentType: 'image/png' }],
    ['kind an array', { kind: ['upload'], contentType: 'image/png' }],
    ['contentType a number', { kind: 'upload', contentType: 123 }],
    ['contentType an object', { kind: 'upload', contentType: { type: 'image/png' } }],
    ['fileName a number', { kind: 'upload', contentType: 'image/png', fileName: 42 }],
    ['fileName null', { kind: 'upload', contentType: 'image/png', fileName: null }],
    ['fileName too long', { kind: 'upload', contentType: 'image/png', fileName: 'a'.repeat(256) + '.png' }],
    ['contentLength a string', { kind: 'upload', contentType: 'image/png', contentLength: '100' }],
    ['contentLength fractional', { kind: 'upload', contentType: 'image/png', contentLength: 1.5 }],
    ['contentLength a boolean', { kind: 'upload', contentType: 'image/png', contentLength: true }],
  ])('a known field of the wrong type: %s', async (_label, body) => {
    expectEnvelope(await presign(body), 400, 'validation_error');
  });

  it.each([
    ['image', 'image/png', 0],
    ['image', 'image/png', -1],
    ['image', 'image/png', 20971521],
    ['video', 'video/mp4', 209715201],
    ['audio', 'audio/mpeg', 52428801],
  ])('contentLength out of range for %s: %s %d', async (_family, contentType, contentLength) => {
    expectEnvelope(await presign({ kind: 'upload', contentType, contentLength }), 400, 'validation_error', /contentLength/);
  });

  it('records nothing for a refused request', async () => {
    const before = await server.db.selectFrom('uploads').select('s3_key').execute();
    await presign({ kind: 'upload', contentType: 'image/svg+xml' });
    await presign({ kind: 'upload', contentType: 'image/png', contentLength: 20971521 });
    const after = await server.db.selectFrom('uploads').select('s3_key').execute();
    expect(after).toHaveLength(before.length);
  });
});

describe('POST /api/s3/presign-upload: 401 unauthorized', () => {
  const body = JSON.stringify({ kind: 'upload', contentType: 'image/png' });

  it('missing header', async () => {
    expectEnvelope(await send({ headers: json, body }), 401, 'unauthorized', INVALID_KEY);
  });

  it('wrong scheme, with a valid key', async () => {
    for (const scheme of ['Basic', 'Token', 'Bearerx', '']) {
      const res = await send({ headers: { ...json, authorization: `${scheme} ${key}`.trim() }, body });
      expectEnvelope(res, 401, 'unauthorized', INVALID_KEY);
    }
  });

  const malformed: [string, (key: string) => string][] = [
    ['empty Bearer', () => 'Bearer '],
    ['no prefix', (k) => `Bearer ${k.slice('prism_sk_'.length)}`],
    ['other prefix', (k) => `Bearer sk_live_${k.slice('prism_sk_'.length)}`],
    ['truncated', (k) => `Bearer ${k.slice(0, -1)}`],
    ['too long', (k) => `Bearer ${k}A`],
    ['illegal characters', (k) => `Bearer ${k.slice(0, -1)}!`],
    ['two keys', (k) => `Bearer ${k} ${k}`],
  ];
  it.each(malformed)('malformed key: %s', async (_label, authorization) => {
    const res = await send({ headers: { ...json, authorization: authorization(key) }, body });
    expectEnvelope(res, 401, 'unauthorized', INVALID_KEY);
  });

  it('unknown key of the right format', async () => {
    const unknown = 'prism_sk_' + 'A'.repeat(43);
    expectEnvelope(await send({ headers: { ...json, authorization: `Bearer ${unknown}` }, body }), 401, 'unauthorized', INVALID_KEY);
  });

  it('revoked key', async () => {
    const created = await server.createKey('carol');
    const headers = { ...json, authorization: `Bearer ${created.key}` };
    expect((await send({ headers, body })).status).toBe(200);
    expect(await server.apiKeys.revokeKey(created.id)).toBe(true);
    expectEnvelope(await send({ headers, body }), 401, 'unauthorized', INVALID_KEY);
  });

  it('is checked before the body: a bad body without a key is still a 401', async () => {
    expectEnvelope(await send({ headers: json, body: '{not json' }), 401, 'unauthorized', INVALID_KEY);
  });
});

describe('POST /api/s3/presign-upload: 403 forbidden', () => {
  it('a key created with another scope only', async () => {
    const other = await server.createKey('dave', ['generations:write']);
    const res = await send({ headers: { ...json, authorization: `Bearer ${other.key}` }, body: JSON.stringify({ kind: 'upload', contentType: 'image/png' }) });
    expectEnvelope(res, 403, 'forbidden', /templates:read/);
  });

  it('a key with templates:read among other scopes is allowed', async () => {
    const both = await server.createKey('dave', ['generations:write', 'templates:read']);
    const res = await send({ headers: { ...json, authorization: `Bearer ${both.key}` }, body: JSON.stringify({ kind: 'upload', contentType: 'image/png' }) });
    expect(res.status).toBe(200);
  });
});

describe('POST /api/s3/presign-upload: 500 server_error', () => {
  it('when the upload cannot be recorded: the envelope, and nothing of the cause', async () => {
    const detail = 'internal-detail-7f3a SELECT key_hash FROM api_keys';
    // A real failure of the real database: a trigger that aborts every new upload record.
    const allowAgain = await refuseInserts(server.db, { table: 'uploads', message: detail });
    try {
      const res = await presign({ kind: 'upload', contentType: 'image/png' });
      const body = expectEnvelope(res, 500, 'server_error');
      expect(res.text).not.toContain('internal-detail-7f3a');
      expect(res.text).not.toMatch(/trigger|uploads|SQLITE|pl\/pgsql|postgres|key_hash/i);
      expect(body.message).toBe('Internal server error');
    } finally {
      await allowAgain();
    }
    expect((await presign({ kind: 'upload', contentType: 'image/png' })).status).toBe(200);
  });
});

describe('wrong method, unknown route, oversized body', () => {
  it.each(['GET', 'PUT', 'PATCH', 'DELETE'])('%s on the presign route is a 405', async (method) => {
    const res = await send({ method, headers: withKey(method === 'GET' || method === 'DELETE' ? {} : json), body: method === 'GET' || method === 'DELETE' ? undefined : '{}' });
    expectEnvelope(res, 405, 'method_not_allowed');
    expect(res.headers.get('allow')).toBe('POST');
  });

  it.each([
    ['GET', '/api/nope'],
    ['POST', '/api/s3/presign'],
    ['POST', '/api/s3/presign-upload/extra'],
    ['GET', '/'],
  ])('%s %s is a 404', async (method, pathname) => {
    const res = await send({ method, path: pathname, headers: withKey(method === 'POST' ? json : {}), body: method === 'POST' ? '{}' : undefined });
    expectEnvelope(res, 404, 'not_found');
  });

  it('a JSON body over 1 MiB is a 413, with an honest Content-Length and chunked', async () => {
    const big = JSON.stringify({ kind: 'upload', contentType: 'image/png', padding: 'x'.repeat(1024 * 1024 + 1) });
    expectEnvelope(await send({ headers: withKey(json), body: big }), 413, 'payload_too_large');

    const chunks = [Buffer.from(big.slice(0, 1000)), Buffer.from(big.slice(1000))];
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = chunks.shift();
        if (next) controller.enqueue(next);
        else controller.close();
      },
    });
    const res = await fetch(server.url + PRESIGN, { method: 'POST', headers: withKey(json), body: stream, duplex: 'half' } as RequestInit);
    expectEnvelope({ status: res.status, headers: res.headers, text: await res.text() }, 413, 'payload_too_large');
  });
});

describe('POST /api/s3/presign-upload: 200', () => {
  /** Spec: extension from the type table, max_bytes by family (MB = 2^20 bytes). */
  const table: [string, string, number][] = [
    ['image/png', 'png', 20971520],
    ['image/jpeg', 'jpg', 20971520],
    ['image/webp', 'webp', 20971520],
    ['image/gif', 'gif', 20971520],
    ['video/mp4', 'mp4', 209715200],
    ['video/quicktime', 'mov', 209715200],
    ['video/webm', 'webm', 209715200],
    ['audio/mpeg', 'mp3', 52428800],
    ['audio/wav', 'wav', 52428800],
    ['audio/mp4', 'm4a', 52428800],
    ['audio/aac', 'aac', 52428800],
    ['audio/ogg', 'ogg', 52428800],
    ['audio/webm', 'weba', 52428800],
    ['audio/flac', 'flac', 52428800],
  ];
  const keyPattern = (userId: string, ext: string) =>
    new RegExp(`^users/${userId}/user-uploads/batch_[0-9a-f]{12}[A-Za-z0-9_-]{22}/file_[A-Za-z0-9_-]{22}\\.${ext}$`);

  it.each(table)('%s: key under the caller prefix with .%s, max_bytes %d, a pending record', async (contentType, ext, maxBytes) => {
    const res = await presign({ kind: 'upload', contentType, fileName: `clip.${ext === 'png' ? 'exe' : 'png'}` });
    expect(res.status, res.text).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const body = JSON.parse(res.text);
    expect(body.s3_key).toMatch(keyPattern('alice', ext));
    expect(body.content_type).toBe(contentType);
    expect(body.max_bytes).toBe(maxBytes);
    expect(body.upload_url.startsWith(`${server.url}/keyframe/${body.s3_key}?`)).toBe(true);
    const url = new URL(body.upload_url);
    expect(url.searchParams.get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');
    expect(url.searchParams.get('X-Amz-Expires')).toBe('900');
    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('content-type;host');
    expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);

    const row = await server.db.selectFrom('uploads').selectAll().where('s3_key', '=', body.s3_key).executeTakeFirstOrThrow();
    expect(row).toMatchObject({ user_id: 'alice', content_type: contentType, max_bytes: maxBytes, state: 'pending', size: null, sha256: null });
    const ttl = Date.parse(row.expires_at) - Date.parse(row.created_at);
    expect(ttl).toBe(900_000);
  });

  it('gives every presign its own unguessable key and its own record', async () => {
    const keys = new Set<string>();
    for (let i = 0; i < 5; i++) keys.add(JSON.parse((await presign({ kind: 'upload', contentType: 'image/png' })).text).s3_key);
    expect(keys.size).toBe(5);
    const batches = new Set([...keys].map((k) => k.split('/')[3]));
    expect(batches.size).toBe(5);
    const rows = await server.db.selectFrom('uploads').select('state').where('s3_key', 'in', [...keys]).execute();
    expect(rows.map((r) => r.state)).toEqual(['pending', 'pending', 'pending', 'pending', 'pending']);
  });

  it.each([
    ['IMAGE/PNG', 'image/png'],
    ['image/png; charset=binary', 'image/png'],
    ['  Video/MP4 ;codecs="avc1.42E01E"', 'video/mp4'],
    ['audio/MPEG', 'audio/mpeg'],
  ])('normalises contentType %j to %s', async (given, normalised) => {
    const res = await presign({ kind: 'upload', contentType: given });
    expect(res.status, res.text).toBe(200);
    const body = JSON.parse(res.text);
    expect(body.content_type).toBe(normalised);
    const row = await server.db.selectFrom('uploads').select('content_type').where('s3_key', '=', body.s3_key).executeTakeFirstOrThrow();
    expect(row.content_type).toBe(normalised);
  });

  it('accepts a JSON Content-Type with parameters', async () => {
    const res = await send({ headers: withKey({ 'content-type': 'application/json; charset=utf-8' }), body: JSON.stringify({ kind: 'upload', contentType: 'audio/flac' }) });
    expect(res.status, res.text).toBe(200);
    expect(JSON.parse(res.text).max_bytes).toBe(52428800);
  });

  it('ignores unknown extra fields, including ones that look like they steer the key', async () => {
    const res = await presign({
      kind: 'upload',
      contentType: 'image/png',
      s3_key: 'users/bob/user-uploads/x/y.png',
      userId: 'bob',
      extension: 'html',
      nested: { a: [1, 2] },
      maxBytes: 999999999999,
    });
    expect(res.status, res.text).toBe(200);
    const body = JSON.parse(res.text);
    expect(body.s3_key).toMatch(keyPattern('alice', 'png'));
    expect(body.max_bytes).toBe(20971520);
  });

  it('accepts an in-range contentLength and signs it into the URL', async () => {
    const res = await presign({ kind: 'upload', contentType: 'image/png', contentLength: 20971520 });
    expect(res.status, res.text).toBe(200);
    const body = JSON.parse(res.text);
    expect(new URL(body.upload_url).searchParams.get('X-Amz-SignedHeaders')).toBe('content-length;content-type;host');
  });

  it.each([
    '../../../../etc/passwd',
    '..\\..\\windows\\win.ini',
    '/etc/shadow.png',
    '%2e%2e%2fescape.png',
    'users/bob/user-uploads/b/f.png',
  ])('fileName %j never reaches the key or a path', async (fileName) => {
    const res = await presign({ kind: 'upload', contentType: 'image/webp', fileName });
    expect(res.status, res.text).toBe(200);
    const body = JSON.parse(res.text);
    expect(body.s3_key).toMatch(keyPattern('alice', 'webp'));
    const row = await server.db.selectFrom('uploads').select('file_name').where('s3_key', '=', body.s3_key).executeTakeFirstOrThrow();
    expect(row.file_name).toBe(fileName);
    const stem = path.basename(fileName.replace(/\\/g, '/')).replace(/\..*$/, '');
    const onDisk = (await readdir(server.dataDir, { recursive: true })).map(String);
    expect(onDisk.filter((p) => stem.length > 2 && p.includes(stem))).toEqual([]);
  });

  it.each(['evil\u0000name.html', 'line\r\nbreak\u001b[31m.svg', 'tab\there.png', 'del\u007f.png'])(
    'fileName %j with control characters is a 400 on every database, and nothing is recorded',
    async (fileName) => {
      const before = await server.db.selectFrom('uploads').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
      const res = await presign({ kind: 'upload', contentType: 'image/webp', fileName });
      expect(res.status, res.text).toBe(400);
      expect(JSON.parse(res.text)).toEqual({ error: 'validation_error', message: 'fileName must not contain control characters (U+0000 to U+001F, U+007F)' });
      const after = await server.db.selectFrom('uploads').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
      expect(Number(after.n)).toBe(Number(before.n));
    },
  );
});
