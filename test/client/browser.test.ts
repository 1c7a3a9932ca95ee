import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumSkip, launchChromium, startPageServer } from '../browser/support/chromium.js';
import { padMp4, readFixture } from '../helpers/media-fixtures.js';
import { rgwForTests, startServerOn } from '../helpers/rgw.js';
import type { TestServer } from '../helpers/server.js';

// The browser entry, bundled by esbuild as a page would ship it, in headless Chromium against a
// real server on both stores: the single PUT goes through XMLHttpRequest (upload progress), the
// multipart parts too, with the ETags read through the store's CORS rules.

const rgw = await rgwForTests('client browser suite');
const chromiumSkipped = chromiumSkip('client browser suite');

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MiB = 1024 * 1024;
const VIDEO_SIZE = 11 * MiB + 123;

const PAGE = `<!doctype html><meta charset="utf-8"><title>keyframe client</title><script src="/client.js"></script>
<script>
  // Counts the XMLHttpRequests the client opens, to see which transport carried the bytes.
  window.xhrPuts = 0;
  const open = XMLHttpRequest.prototype.open;
  XMLHttpRequest.prototype.open = function (method, ...rest) { if (method === 'PUT') window.xhrPuts++; return open.call(this, method, ...rest); };
  window.upload = async (baseUrl, apiKey, file, multipartThreshold) => {
    const blob = await (await fetch('/' + file)).blob();
    const client = new Keyframe.KeyframeClient({ baseUrl, apiKey, multipartThreshold });
    const progress = [];
    try {
      const ref = await client.uploadReference(blob, { onProgress: (p) => progress.push(p) });
      return { ref, progress };
    } catch (err) {
      return { error: { name: err.name, error: err.error, status: err.status, message: err.message }, progress };
    }
  };
</script>`;

describe.skipIf(chromiumSkipped)('keyframe/client in headless Chromium', () => {
  let script: string;
  const files = { 'sample.png': readFixture('sample.png'), 'clip.mp4': padMp4(readFixture('sample.mp4'), VIDEO_SIZE) };

  beforeAll(async () => {
    const bundled = await build({
      entryPoints: [path.join(ROOT, 'src/client/index.ts')],
      bundle: true,
      write: false,
      format: 'iife',
      globalName: 'Keyframe',
      platform: 'browser',
      target: 'es2022',
      logLevel: 'silent',
    });
    script = bundled.outputFiles[0]!.text;
  });

  describe.each(['disk', 's3'] as const)('%s store', (storeKind) => {
    describe.skipIf(storeKind === 's3' && rgw.skip)('uploads', () => {
      let page: { origin: string; close(): Promise<void> };
      let server: TestServer;
      let browser: Awaited<ReturnType<typeof launchChromium>>;
      let context: BrowserContext;
      let apiKey: string;

      beforeAll(async () => {
        page = await startPageServer({
          '/': { type: 'text/html; charset=utf-8', body: PAGE },
          '/client.js': { type: 'text/javascript; charset=utf-8', body: script },
          ...Object.fromEntries(Object.entries(files).map(([name, body]) => [`/${name}`, { type: 'application/octet-stream', body }])),
        });
        server = await startServerOn(storeKind, rgw, 'client-browser', { KEYFRAME_CORS_ORIGINS: page.origin, S3_APPLY_CORS: 'true' });
        apiKey = (await server.createKey('alice')).key;
        browser = await launchChromium();
        context = browser.context;
      }, 120_000);

      afterAll(async () => {
        await browser?.close();
        await server?.stop();
        await page?.close();
      }, 120_000);

      async function uploadInPage(file: string, multipartThreshold?: number) {
        const tab = await context.newPage();
        const consoleLines: string[] = [];
        tab.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
        try {
          await tab.goto(`${page.origin}/`);
          const outcome = (await tab.evaluate(([base, key, name, threshold]) => (window as any).upload(base, key, name, threshold), [
            server.url,
            apiKey,
            file,
            multipartThreshold,
          ] as const)) as { ref?: any; error?: unknown; progress: { loaded: number; total: number }[] };
          const xhrPuts = (await tab.evaluate(() => (window as any).xhrPuts)) as number;
          return { ...outcome, xhrPuts, consoleLines };
        } finally {
          await tab.close();
        }
      }

      it('a PNG File goes up by one XMLHttpRequest PUT, type detected, verified', async () => {
        const outcome = await uploadInPage('sample.png');
        expect(outcome.error, JSON.stringify(outcome)).toBeUndefined();
        const size = files['sample.png'].length;
        expect(outcome.ref).toMatchObject({ content_type: 'image/png', size, status: { state: 'verified', media: { video_codec: 'png' } } });
        expect(outcome.xhrPuts).toBe(1);
        expect(outcome.progress.at(-1)).toEqual({ loaded: size, total: size });
      });

      it('an 11 MiB MP4 goes up in 3 parts by XMLHttpRequest (ETags read through CORS), verified', async () => {
        const outcome = await uploadInPage('clip.mp4', 1 * MiB);
        expect(outcome.error, JSON.stringify(outcome)).toBeUndefined();
        expect(outcome.ref).toMatchObject({ content_type: 'video/mp4', size: VIDEO_SIZE, status: { state: 'verified', media: { video_codec: 'h264' } } });
        expect(outcome.xhrPuts).toBe(3);
        expect(outcome.progress.every((p) => p.loaded <= p.total)).toBe(true);
        expect(outcome.progress.at(-1)).toEqual({ loaded: VIDEO_SIZE, total: VIDEO_SIZE });
      });
    });
  });
});
