import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONSOLE_REFERENCE_FIELDS } from '../../src/console/reference-fields.js';
import { REFERENCE_FIELDS } from '../../src/domain/generations/job.js';
import { installErrorHandling } from '../../src/http/errors.js';
import { consoleRoutes } from '../../src/http/routes/console.js';
import { S3Store } from '../../src/storage/s3/s3-store.js';
import { ensureConsoleBuilt } from '../helpers/console-build.js';
import { rgwForTests, startServerOn } from '../helpers/rgw.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

// The browser console at /console: the built files of dist/console with a strict CSP (own script
// and style only, network and media to this origin and the store's), nosniff, no referrer; a 404
// in the envelope when KEYFRAME_CONSOLE=false, and one saying so when the console was not built.
// What the page does is test/browser/console.test.ts.

const rgw = await rgwForTests('console test (CSP on S3)');

async function get(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { headers });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** The CSP as a map of directive → sources. */
function directives(csp: string | null): Record<string, string[]> {
  return Object.fromEntries(
    (csp ?? '')
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .filter((d) => d[0])
      .map(([name, ...sources]) => [name!, sources]),
  );
}

function expectSecurityHeaders(headers: Headers, storeOrigin: string): void {
  const csp = directives(headers.get('content-security-policy'));
  expect(csp).toEqual({
    'default-src': ["'none'"],
    'script-src': ["'self'"],
    'style-src': ["'self'"],
    'img-src': ["'self'", 'blob:', 'data:'],
    'media-src': ["'self'", storeOrigin],
    'connect-src': ["'self'", storeOrigin],
    'base-uri': ["'none'"],
    'form-action': ["'none'"],
    'frame-ancestors': ["'none'"],
  });
  expect(headers.get('x-content-type-options')).toBe('nosniff');
  expect(headers.get('referrer-policy')).toBe('no-referrer');
  expect(headers.get('cache-control')).toBe('no-cache');
}

describe('GET /console (disk store)', () => {
  let server: TestServer;

  beforeAll(async () => {
    await ensureConsoleBuilt();
    server = await startTestServer();
  }, 120_000);
  afterAll(async () => server?.stop());

  it('serves the page at /console and /console/ with the security headers; its only scripts are files of its own', async () => {
    for (const pathname of ['/console', '/console/']) {
      const res = await get(server.url + pathname);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
      // The disk store's URLs are the server's own (its public URL): 'self' and that origin.
      expectSecurityHeaders(res.headers, new URL(server.url).origin);
      const scripts = [...res.text.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
      expect(scripts.length).toBeGreaterThan(0);
      for (const [, attributes, body] of scripts) {
        expect(attributes).toMatch(/\bsrc="\/console\/[a-z-]+\.js"/);
        expect(body!.trim()).toBe('');
      }
      expect(res.text).not.toMatch(/\son[a-z]+=/i); // no inline event handlers
      expect(res.text).not.toMatch(/\sstyle=/i); // no inline style (style-src 'self')
    }
  });

  it('serves the bundle, its source map and the style sheet with their types and the same headers', async () => {
    const origin = new URL(server.url).origin;
    const js = await get(`${server.url}/console/console.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expectSecurityHeaders(js.headers, origin);
    expect(js.text).toMatch(/sourceMappingURL=console\.js\.map/);
    // The bundle talks to the API through the typed client: the routes are in it.
    expect(js.text).toContain('/api/models');
    const map = await get(`${server.url}/console/console.js.map`);
    expect(map.status).toBe(200);
    expect(JSON.parse(map.text).sources.some((s: string) => s.endsWith('src/console/console.ts'))).toBe(true);
    const css = await get(`${server.url}/console/console.css`);
    expect(css.status).toBe(200);
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
  });

  it('answers 304 to a revalidation of an unchanged file', async () => {
    const first = await get(`${server.url}/console/console.js`);
    const etag = first.headers.get('etag');
    expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
    const again = await fetch(`${server.url}/console/console.js`, { headers: { 'if-none-match': etag! } });
    expect(again.status).toBe(304);
    expect(again.headers.get('etag')).toBe(etag);
  });

  it('answers 404 in the envelope for a file it does not have, and never reads outside dist/console', async () => {
    for (const pathname of ['/console/nope.js', '/console/..%2F..%2Fpackage.json', '/console/%2e%2e%2fconfig.js']) {
      const res = await get(server.url + pathname);
      expect(res.status, pathname).toBe(404);
      expect(JSON.parse(res.text)).toEqual({ error: 'not_found', message: expect.any(String) });
    }
  });
});

describe('KEYFRAME_CONSOLE=false', () => {
  it('answers 404 not_found in the envelope for the page and its files', async () => {
    await ensureConsoleBuilt();
    const server = await startTestServer({ KEYFRAME_CONSOLE: 'false' });
    try {
      for (const pathname of ['/console', '/console/', '/console/console.js']) {
        const res = await get(server.url + pathname);
        expect(res.status, pathname).toBe(404);
        expect(res.headers.get('content-type')).toMatch(/^application\/json/);
        expect(JSON.parse(res.text)).toEqual({ error: 'not_found', message: expect.any(String) });
      }
      // The API itself is unaffected.
      expect((await server.api('GET', '/healthz')).status).toBe(200);
    } finally {
      await server.stop();
    }
  }, 120_000);
});

describe('the console not built', () => {
  it('answers 404 in the envelope saying to run npm run build', async () => {
    const empty = await mkdtemp(path.join(os.tmpdir(), 'keyframe-no-console-'));
    // An S3 store signs URLs without any request, so none needs to be running here.
    const store = new S3Store({
      endpoint: 'http://127.0.0.1:9',
      region: 'us-east-1',
      bucket: 'console-test',
      accessKeyId: 'id',
      secretAccessKey: 'secret',
      forcePathStyle: true,
    });
    const app = Fastify();
    installErrorHandling(app);
    await app.register(consoleRoutes, { store, dir: path.join(empty, 'console') });
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      for (const pathname of ['/console', '/console/console.js']) {
        const res = await get(url + pathname);
        expect(res.status).toBe(404);
        const body = JSON.parse(res.text);
        expect(body).toEqual({ error: 'not_found', message: expect.stringContaining('not built') });
        expect(body.message).toContain('npm run build');
      }
    } finally {
      await app.close();
      store.client.destroy();
      await rm(empty, { recursive: true, force: true });
    }
  });
});

describe.skipIf(rgw.skip)('GET /console on S3', () => {
  it("lets the page connect to and play from the store's origin, where uploads are PUT and video_url points", async () => {
    await ensureConsoleBuilt();
    const server = await startServerOn('s3', rgw, 'console');
    try {
      const res = await get(`${server.url}/console`);
      expect(res.status).toBe(200);
      expectSecurityHeaders(res.headers, new URL(rgw.endpoint).origin);
      // And the upload URLs a presign answers are on that origin indeed.
      const { key } = await server.createKey('alice');
      const presign = await server.api('POST', '/api/s3/presign-upload', { key, body: { kind: 'upload', contentType: 'image/png' } });
      expect(presign.status, JSON.stringify(presign.body)).toBe(200);
      expect(new URL(presign.body.upload_url).origin).toBe(new URL(rgw.endpoint).origin);
    } finally {
      await server.stop();
    }
  }, 120_000);
});

describe("the console's table of reference fields", () => {
  it("offers each field the domain's family of upload, one or several as the domain takes", () => {
    const pageTable = Object.fromEntries(Object.entries(CONSOLE_REFERENCE_FIELDS).map(([field, { family, many }]) => [field, { family, many }]));
    expect(pageTable).toEqual(REFERENCE_FIELDS);
  });
});
