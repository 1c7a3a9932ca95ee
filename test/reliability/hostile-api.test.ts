import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALLOWED_CONTENT_TYPES } from '../../src/domain/media-types.js';
import { QUOTAS_LIFTED, startTestServer, type TestServer } from '../helpers/server.js';
import { expectEnvelope4xx, expectS3Refusal, leaks } from './support/checks.js';
import { rawRequest, requestHead } from './support/raw-http.js';

/**
 * Hostile API input: generated bodies, headers, paths and broken HTTP thrown at
 * every route that exists. Every answer is a 4xx in the error envelope (S3-style
 * XML on the object routes) or a correct success; never a 5xx, never internals,
 * and the server keeps answering.
 */
let server: TestServer;
let port: number;
let key: string;
let scopelessKey: string;
/** A key of the right shape that names no upload. */
const FAKE_KEY = 'users/alice/user-uploads/batch_aaaaaaaaaaaaaaaaaaaaaa/file_aaaaaaaaaaaaaaaaaaaaaa.png';

/** JSON routes that exist in this build, with the methods they serve; `bearer: false` routes authenticate otherwise. */
const jsonRoutes: { method: string; path: string; bearer?: false }[] = [{ method: 'POST', path: '/api/s3/presign-upload' }];

beforeAll(async () => {
  server = await startTestServer(QUOTAS_LIFTED);
  port = Number(new URL(server.url).port);
  key = (await server.createKey('alice')).key;
  scopelessKey = (await server.createKey('bob', ['other:read'])).key;
  // Routes written by other issues join the fuzzing as soon as they exist.
  const candidates: { method: string; path: string; bearer?: false }[] = [
    { method: 'GET', path: '/api/uploads/status' },
    { method: 'GET', path: '/api/uploads/status?key=users/alice/user-uploads/batch_aaaaaaaaaaaaaaaaaaaaaa/file_aaaaaaaaaaaaaaaaaaaaaa.png' },
    { method: 'GET', path: '/api/uploads/status?key=../../etc/passwd' },
    { method: 'POST', path: '/api/generations' },
    { method: 'GET', path: '/api/generations/gen_x' },
    { method: 'POST', path: '/api/generations/gen_x/callback', bearer: false },
    { method: 'GET', path: '/api/models' },
    // Uppy Companion's S3 routes (multipart uploads, and /s3/params for a single PUT).
    { method: 'POST', path: '/api/s3/multipart' },
    { method: 'GET', path: '/api/s3/params?type=image/png' },
    { method: 'GET', path: '/api/s3/params?type=../../etc/passwd&size=99999999999' },
    { method: 'GET', path: `/api/s3/multipart/mp_x?key=${FAKE_KEY}` },
    { method: 'GET', path: `/api/s3/multipart/mp_x/1?key=${FAKE_KEY}` },
    { method: 'GET', path: `/api/s3/multipart/mp_x/batch?key=${FAKE_KEY}&partNumbers=1,2,3` },
    { method: 'POST', path: `/api/s3/multipart/mp_x/complete?key=${FAKE_KEY}` },
    { method: 'DELETE', path: `/api/s3/multipart/mp_x?key=${FAKE_KEY}` },
  ];
  for (const candidate of candidates) {
    if (await routeExists(candidate)) jsonRoutes.push(candidate);
  }
  console.log(`hostile-api: fuzzing ${jsonRoutes.map((r) => `${r.method} ${r.path}`).join(', ')}`);
});

afterAll(async () => {
  await server?.stop();
});

async function routeExists(route: { method: string; path: string }): Promise<boolean> {
  const res = await fetch(server.url + route.path, { method: route.method, headers: { authorization: `Bearer ${key}` } });
  const body = await res.text();
  return !(res.status === 404 && body.includes('No route for'));
}

async function send(method: string, path: string, headers: Record<string, string>, body?: string | Uint8Array) {
  const payload = body === undefined || method === 'GET' || method === 'HEAD' ? undefined : typeof body === 'string' ? body : new Blob([Buffer.from(body)]);
  const res = await fetch(server.url + path, { method, headers, body: payload });
  return { status: res.status, text: await res.text(), contentType: res.headers.get('content-type') ?? '' };
}

async function expectStillUp(): Promise<void> {
  const health = await fetch(server.url + '/healthz');
  expect(health.status).toBe(200);
  const ok = await server.api('POST', '/api/s3/presign-upload', { key, body: { kind: 'upload', contentType: 'image/png' } });
  expect(ok.status).toBe(200);
}

/** Strings that have hurt servers: traversal, control characters, huge, odd unicode, prototype keys. */
const hostileString = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 64 }),
  fc.constantFrom(
    '../../../etc/passwd',
    '..\\..\\windows\\system32',
    '/etc/shadow',
    'a/../../b',
    '%2e%2e%2f%2e%2e%2f',
    '\u0000',
    'name\u0000.png',
    '\r\nSet-Cookie: x=1',
    '\u202e\u0007\u001b[31m',
    '\ud800',
    '__proto__',
    'constructor',
    'prototype',
    '<script>alert(1)</script>',
    "'; drop table uploads; --",
    '${jndi:ldap://x}',
  ),
  fc.integer({ min: 256, max: 300_000 }).map((n) => 'x'.repeat(n)),
);

const anyValue = fc.oneof(
  { depthSize: 'small' },
  hostileString,
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 5 }),
  fc.jsonValue({ maxDepth: 3 }),
);

/** Presign-like bodies: sometimes right, mostly wrong in one or more fields. */
const presignLikeBody = fc
  .record(
    {
      kind: fc.oneof(fc.constant('upload'), fc.constantFrom('Upload', 'UPLOAD', 'upload ', 'download', ''), anyValue),
      contentType: fc.oneof(
        fc.constantFrom(...ALLOWED_CONTENT_TYPES),
        fc.constantFrom('IMAGE/PNG', 'image/png; charset=utf-8', 'image/svg+xml', 'text/html', 'application/javascript', 'image/png\u0000'),
        anyValue,
      ),
      fileName: anyValue,
      contentLength: fc.oneof(fc.integer(), fc.double(), anyValue),
      extra: anyValue,
    },
    { requiredKeys: [] },
  )
  .map((r) => {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(r)) if (k !== 'extra') out[k] = v;
    if ('extra' in r) out[`x_${Object.keys(out).length}`] = r.extra;
    return out;
  });

/** Turns a value into JSON text, sometimes with prototype-pollution keys or duplicate keys spliced in. */
const asJsonText = (value: unknown) =>
  fc
    .constantFrom('plain', 'proto', 'constructor', 'duplicate', 'deep')
    .map((how) => {
      const text = JSON.stringify(value) ?? 'null';
      if (!text.startsWith('{') || text === '{}') return text;
      switch (how) {
        case 'proto':
          return `{"__proto__":{"polluted":true,"kind":"upload"},${text.slice(1)}`;
        case 'constructor':
          return `{"constructor":{"prototype":{"polluted":true}},${text.slice(1)}`;
        case 'duplicate':
          return `${text.slice(0, -1)},"kind":"upload","kind":"not-upload"}`;
        case 'deep':
          return `${text.slice(0, -1)},"deep":${'['.repeat(3000)}${']'.repeat(3000)}}`;
        default:
          return text;
      }
    });

describe('hostile API input', () => {
  it('presign: generated JSON bodies get 200 when valid, else a 4xx envelope', async () => {
    await fc.assert(
      fc.asyncProperty(presignLikeBody.chain(asJsonText), async (text) => {
        const res = await send('POST', '/api/s3/presign-upload', { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, text);
        if (res.status === 200) {
          const body = JSON.parse(res.text) as { s3_key: string; upload_url: string; content_type: string };
          expect(body.s3_key).toMatch(/^users\/alice\/user-uploads\/batch_[0-9a-f]{12}[\w-]{22}\/file_[\w-]{22}\.[a-z0-9]+$/);
          expect(ALLOWED_CONTENT_TYPES).toContain(body.content_type);
          expect(({} as Record<string, unknown>).polluted).toBeUndefined();
          return;
        }
        expectEnvelope4xx(res.status, res.text, `body ${text.slice(0, 200)}`, [key]);
      }),
      { numRuns: 600 },
    );
    await expectStillUp();
  });

  it('every JSON route: random bytes, wrong Content-Types and broken auth headers', async () => {
    const contentType = fc.oneof(
      fc.constantFrom(
        'application/json',
        'application/json; charset=utf-8',
        'application/json; charset=latin1',
        'APPLICATION/JSON',
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/octet-stream',
        'application/json;;;',
        'image/png',
        '',
      ),
      fc.string({ minLength: 1, maxLength: 40 }).filter((s) => /^[\x21-\x7e ]+$/.test(s) && s.trim() === s),
    );
    const auth = fc.constantFrom('valid', 'scopeless', 'none', 'basic', 'lower-bearer', 'truncated', 'padded', 'other-prefix', 'two-keys');
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 2048 }),
      // Valid JSON with invalid UTF-8 bytes spliced into a string.
      fc.constantFrom(0x80, 0xc0, 0xed, 0xf5, 0xff).map((b) => Buffer.concat([Buffer.from('{"kind":"upload","contentType":"image/png","fileName":"'), Buffer.from([b, 0xa0]), Buffer.from('"}')])),
      // Valid bodies cut short.
      fc.integer({ min: 0, max: 40 }).map((n) => Buffer.from('{"kind":"upload","contentType":"image/png"}'.slice(0, n))),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...jsonRoutes), contentType, auth, body, async (route, type, how, bytes) => {
        const headers: Record<string, string> = {};
        if (type !== '') headers['content-type'] = type;
        const authorization = {
          valid: `Bearer ${key}`,
          scopeless: `Bearer ${scopelessKey}`,
          none: undefined,
          basic: `Basic ${Buffer.from('alice:pw').toString('base64')}`,
          'lower-bearer': `bearer ${key}`,
          truncated: `Bearer ${key.slice(0, -1)}`,
          padded: `Bearer ${key}x`,
          'other-prefix': `Bearer sk_live_${key.slice(9)}`,
          'two-keys': `Bearer ${key} ${key}`,
        }[how];
        if (authorization !== undefined) headers.authorization = authorization;
        const res = await send(route.method, route.path, headers, bytes);
        const context = `${route.method} ${route.path} ${how} ${type} ${Buffer.from(bytes).toString('latin1').slice(0, 120)}`;
        if (route.bearer !== false && how !== 'valid' && how !== 'lower-bearer') {
          // Auth is judged before the body: anything but a live key with the scope is 401/403.
          const err = expectEnvelope4xx(res.status, res.text, context, [key]);
          expect(err.error, context).toBe(how === 'scopeless' ? 'forbidden' : 'unauthorized');
          return;
        }
        if (res.status >= 200 && res.status < 300) return;
        expectEnvelope4xx(res.status, res.text, context, [key]);
      }),
      { numRuns: 800 },
    );
    await expectStillUp();
  });

  it('generations: generated bodies get a 2xx when acceptable, else a 4xx envelope', async () => {
    if (!jsonRoutes.some((r) => r.method === 'POST' && r.path === '/api/generations')) {
      console.warn('hostile-api: POST /api/generations does not exist in this build; its fuzzing is skipped');
      return;
    }
    const keyish = fc.oneof(
      hostileString,
      fc.constantFrom('users/alice/user-uploads/batch_aaaaaaaaaaaaaaaaaaaaaa/file_aaaaaaaaaaaaaaaaaaaaaa.png', 'users/bob/user-uploads/x/y.png', '/etc/passwd'),
    );
    const body = fc.record(
      {
        prompt: fc.oneof(hostileString, anyValue),
        modelName: fc.oneof(fc.constantFrom('veo-3.1', 'kling-2', ''), anyValue),
        aspectRatio: fc.oneof(fc.constantFrom('auto', '16:9', '1:1', '2:1'), anyValue),
        duration: fc.oneof(fc.constantFrom('5s', '8s', '-1s', '1e9s'), anyValue),
        resolution: fc.oneof(fc.constantFrom('720p', '1080p', '8k'), anyValue),
        count: fc.oneof(fc.integer({ min: -5, max: 10 }), anyValue),
        hasAudio: fc.oneof(fc.boolean(), anyValue),
        startFrameKey: fc.oneof(keyish, anyValue),
        ingredientImageKeys: fc.oneof(fc.array(keyish, { maxLength: 20 }), anyValue),
        referenceVideoKeys: fc.oneof(fc.array(keyish, { maxLength: 5 }), anyValue),
        audioKey: fc.oneof(keyish, anyValue),
        webhook_url: fc.oneof(fc.constantFrom('http://127.0.0.1:1/x', 'file:///etc/passwd', 'javascript:alert(1)', 'http://169.254.169.254/'), anyValue),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(body.chain(asJsonText), async (text) => {
        const res = await send('POST', '/api/generations', { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, text);
        if (res.status >= 200 && res.status < 300) return;
        expectEnvelope4xx(res.status, res.text, `generation ${text.slice(0, 200)}`, [key]);
      }),
      { numRuns: 400 },
    );
    await expectStillUp();
  });

  it('random paths and methods: unknown routes 4xx envelope, object routes S3-style XML', async () => {
    const segment = fc.oneof(
      fc.constantFrom('..', '.', '', '%2e%2e', '%2f', '%00', '%', '%zz', '%ff', '~', 'api', 's3', 'keyframe', 'users', 'alice', 'bob', 'presign-upload'),
      fc.string({ maxLength: 20 }).map(encodeURIComponent),
      fc.string({ unit: 'binary', maxLength: 8 }).map(encodeURIComponent),
      fc.integer({ min: 100, max: 3000 }).map((n) => 'a'.repeat(n)),
    );
    const prefix = fc.constantFrom('/', '/api/', '/api/s3/', '/api/s3/multipart/', '/keyframe/', '/keyframe/users/alice/user-uploads/', '/keyframe/users/bob/', '//', '/healthz/', '/console/');
    const query = fc.oneof(
      fc.constant(''),
      fc.constantFrom('?X-Amz-Signature=00', '?x=1&x=2', '?%zz', '?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20200101T000000Z&X-Amz-Expires=1&X-Amz-SignedHeaders=host&X-Amz-Credential=keyframe%2F20200101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=' + '0'.repeat(64)),
      fc.string({ maxLength: 40 }).map((s) => '?' + encodeURIComponent(s)),
    );
    const method = fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS');
    await fc.assert(
      fc.asyncProperty(method, prefix, fc.array(segment, { maxLength: 6 }), query, async (m, p, segments, q) => {
        const target = p + segments.join('/') + q;
        fc.pre(!target.includes(process.cwd()));
        const isSigned = target.startsWith('/keyframe/') || target === '/keyframe';
        const res = await rawRequest(port, {
          parts: [requestHead(m, target, { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': 2, connection: 'close' }), '{}'],
          timeoutMs: 5000,
        });
        const context = `${m} ${target.slice(0, 200)}`;
        expect(res.status, `${context}: no answer`).toBeGreaterThan(0);
        if (res.status === 200) {
          // Only the real routes may succeed: health check, openapi, presign, the console's page.
          expect(['/healthz', '/openapi.json', '/api/s3/presign-upload', '/console/'], context).toContain(target.split('?')[0]);
          return;
        }
        if (m === 'HEAD') {
          expect(res.status, context).toBeGreaterThanOrEqual(400);
          expect(res.status, context).toBeLessThan(500);
          return;
        }
        if (isSigned && res.headers['content-type']?.startsWith('application/xml')) expectS3Refusal(res.status, res.body, context, m);
        else expectEnvelope4xx(res.status, res.body, context, [key]);
      }),
      { numRuns: 800 },
    );
    await expectStillUp();
  });

  it('random extra headers on a valid presign never break it', async () => {
    const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,30}$/).filter((n) => !['host', 'authorization', 'content-type', 'content-length', 'transfer-encoding', 'connection', 'expect', 'upgrade', 'keep-alive', 'te', 'trailer'].includes(n));
    const value = fc.oneof(fc.stringMatching(/^[\x20-\x7e]{0,200}$/), fc.integer({ min: 200, max: 1500 }).map((n) => 'v'.repeat(n)));
    // At most 8 × 1.5 KB: under Node's 16 KB header limit (the case over it is tested below).
    await fc.assert(
      fc.asyncProperty(fc.dictionary(name, value, { maxKeys: 8 }), async (extra) => {
        const res = await send('POST', '/api/s3/presign-upload', { ...extra, authorization: `Bearer ${key}`, 'content-type': 'application/json' }, '{"kind":"upload","contentType":"image/webp"}');
        if (res.status !== 200) expectEnvelope4xx(res.status, res.text, `headers ${JSON.stringify(extra).slice(0, 200)}`, [key]);
      }),
      { numRuns: 200 },
    );
    await expectStillUp();
  });

  describe('broken HTTP', () => {
    const presignHead = (body: string | Buffer, extra: Record<string, string | number> = {}) =>
      requestHead('POST', '/api/s3/presign-upload', {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        ...extra,
      });

    it('a 10 MB JSON body is refused with 413 in the envelope', async () => {
      const big = `{"kind":"upload","contentType":"image/png","fileName":"${'x'.repeat(10 * 1024 * 1024)}"}`;
      const res = await rawRequest(port, { parts: [presignHead(big), big], timeoutMs: 20_000 });
      const err = expectEnvelope4xx(res.status, res.body, '10 MB body');
      expect(err.error).toBe('payload_too_large');
      await expectStillUp();
    });

    it('an empty body and a whitespace body are 400 validation_error', async () => {
      for (const body of ['', '   ', '\n']) {
        const res = await rawRequest(port, { parts: [presignHead(body), body] });
        expect(expectEnvelope4xx(res.status, res.body, `body ${JSON.stringify(body)}`).error).toBe('validation_error');
      }
    });

    it('duplicate keys: the last one counts, as JSON.parse says, and a wrong last kind is refused', async () => {
      const body = '{"kind":"upload","contentType":"image/png","kind":"x"}';
      const res = await rawRequest(port, { parts: [presignHead(body), body] });
      expect(expectEnvelope4xx(res.status, res.body, 'duplicate kind').error).toBe('validation_error');
    });

    it('a body shorter than its Content-Length, then end of stream: a 4xx envelope or a closed connection, server up', async () => {
      const body = '{"kind":"upl';
      const res = await rawRequest(port, { parts: [presignHead(body, { 'content-length': 100 }), body], end: true, timeoutMs: 3000 });
      if (res.status !== 0) expectEnvelope4xx(res.status, res.body, 'truncated body');
      await expectStillUp();
    });

    it('a malformed request line, a bad header, a bad chunk and oversized headers get the envelope', async () => {
      const cases: [string, string[]][] = [
        ['garbage request line', ['GARBAGE\r\n\r\n']],
        ['bad header name', ['GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n']],
        ['bad chunk', [presignHead('', { 'content-length': '', 'transfer-encoding': 'chunked' }).replace('content-length: \r\n', ''), '5\r\n{"kin\r\nZZ\r\n']],
        ['headers over 16 KB', [requestHead('GET', '/healthz', { 'x-big': 'a'.repeat(20_000) })]],
        ['invalid percent-encoding in the path', [requestHead('GET', '/api/%zz', {})]],
        ['invalid percent-encoding in an object path', [requestHead('PUT', '/keyframe/%zz/x.png?X-Amz-Signature=0', { 'content-length': 0 })]],
      ];
      for (const [name, parts] of cases) {
        const res = await rawRequest(port, { parts, timeoutMs: 3000 });
        expect(res.status, `${name}: answered`).toBeGreaterThan(0);
        expectEnvelope4xx(res.status, res.body, name, [key]);
      }
      await expectStillUp();
    });

    it('header values with bytes over 0x7f (invalid UTF-8) get the envelope', async () => {
      const body = '{"kind":"upload","contentType":"image/png"}';
      const cases: [string, Record<string, string | number>][] = [
        ['authorization', { authorization: `Bearer prism_sk_${'\xff'.repeat(43)}`, 'content-type': 'application/json' }],
        ['content-type', { authorization: `Bearer ${key}`, 'content-type': 'application/json\xff\xfe' }],
        ['extra header', { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-note': '\xc3\x28\xa0\xa1' }],
      ];
      for (const [name, headers] of cases) {
        const head = Buffer.from(requestHead('POST', '/api/s3/presign-upload', { ...headers, 'content-length': body.length }), 'latin1');
        const res = await rawRequest(port, { parts: [head, body] });
        if (name === 'extra header' && res.status === 200) continue;
        expectEnvelope4xx(res.status, res.body, `bytes over 0x7f in ${name}`, [key]);
      }
      await expectStillUp();
    });

    it('nothing a client sends reaches the log as a key or a signature', async () => {
      // The logger redacts Authorization and logs paths without query strings; here the answers are checked too.
      const res = await send('POST', '/api/s3/presign-upload', { authorization: `Bearer ${key}x`, 'content-type': 'application/json' }, '{}');
      expect(leaks(res.text, [key])).toBeNull();
    });
  });
});
