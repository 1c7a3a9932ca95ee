import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { ARTEFACTS_DIR, chromiumSkip, launchChromium } from './support/chromium.js';

// The API reference (Swagger UI at /docs, src/http/openapi.ts) renders Keyframe's operations in
// headless Chromium from the server's own assets: every request the page makes goes to the
// server, none to a CDN. Run by `npm run test:browser` (vitest.browser.config.ts).

const chromiumSkipped = chromiumSkip('browser (API reference) suite');

describe.skipIf(chromiumSkipped)('/docs in headless Chromium', () => {
  let server: TestServer;
  let browser: Awaited<ReturnType<typeof launchChromium>>;

  beforeAll(async () => {
    server = await startTestServer();
    browser = await launchChromium();
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('renders the operations, loading everything from 127.0.0.1', async () => {
    const requested: string[] = [];
    browser.context.on('request', (request) => {
      // data: URLs (the inlined logo) are no requests to anywhere.
      if (!request.url().startsWith('data:')) requested.push(request.url());
    });
    const page = await browser.context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));

    const res = await page.goto(`${server.url}/docs`);
    expect(res?.status()).toBe(200);
    const presign = page.locator('.opblock-summary-path[data-path="/api/s3/presign-upload"]').first();
    await presign.waitFor({ state: 'visible', timeout: 60_000 });
    expect((await presign.innerText()).replace(/\u200b/g, '')).toBe('/api/s3/presign-upload');
    // The tags and a few of Keyframe's own operations made it onto the page.
    for (const tag of ['uploads', 'multipart', 'generations', 'models', 'operations']) {
      await expect.poll(() => page.locator(`.opblock-tag[data-tag="${tag}"]`).count(), { timeout: 10_000 }).toBe(1);
    }
    for (const p of ['/api/generations/{id}/callback', '/api/models', '/readyz']) {
      expect(await page.locator(`.opblock-summary-path[data-path="${p}"]`).count(), p).toBeGreaterThan(0);
    }
    await page.waitForLoadState('networkidle');

    await mkdir(ARTEFACTS_DIR, { recursive: true });
    await page.screenshot({ path: path.join(ARTEFACTS_DIR, 'docs.png'), fullPage: true });

    expect(errors).toEqual([]);
    expect(requested).toEqual(expect.arrayContaining([`${server.url}/docs`, `${server.url}/docs/json`]));
    expect(requested.filter((url) => new URL(url).hostname !== '127.0.0.1')).toEqual([]);
    await page.close();
  });
});
