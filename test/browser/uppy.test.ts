import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import type { BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ffmpegPath } from '../../src/media/binaries.js';
import { waitForGeneration } from '../helpers/generations.js';
import { padMp4 } from '../helpers/media-fixtures.js';
import { rgwForTests, startServerOn } from '../helpers/rgw.js';
import { QUOTAS_LIFTED, type TestServer } from '../helpers/server.js';
import { chromiumSkip, launchChromium, startPageServer } from './support/chromium.js';

// Issue 13's acceptance: a page using Uppy with its defaults (multipart above 100 MB) uploads a
// 150–190 MB MP4 through Keyframe, in headless Chromium, on the disk store and on RGW; the upload
// is verified and a generation uses it as sourceVideoKey; and a small file (under the threshold)
// goes up by Uppy's single PUT through /api/s3/params and is verified. Run by `npm run test:browser`
// (vitest.browser.config.ts), which .ci/run calls after installing Debian's chromium.
//
// Each Uppy major lives in a package of its own (test/browser/uppy5/): Uppy 5 and 6 both
// peer-depend on @uppy/core, so they cannot share one node_modules. The page script is bundled
// here with esbuild from that package and served, with the page, from 127.0.0.1.

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MiB = 1024 * 1024;
/** Between Uppy's 100 MB multipart threshold and the 200 MiB video limit. */
const FILE_SIZE = 160 * MiB + 12345;
/** Under the threshold: Uppy's single PUT, through `/api/s3/params`. */
const SMALL_FIXTURE = path.join(HERE, '..', 'fixtures', 'media', 'sample.png');
const SMALL_SIZE = (await stat(SMALL_FIXTURE)).size;

const rgw = await rgwForTests('browser (Uppy) suite');

const chromiumSkipped = chromiumSkip('browser (Uppy) suite');

interface UppyVersion {
  major: 5 | 6;
  entry: string;
  packageDir: string;
}
const VERSIONS: UppyVersion[] = [
  // docs/api.md's two options: `endpoint` and the key in `headers`.
  { major: 5, entry: 'page/uppy5.ts', packageDir: 'uppy5' },
  // Keyframe's options for Uppy 6 (src/client/uppy.ts).
  { major: 6, entry: 'page/uppy6.ts', packageDir: 'uppy6' },
];

/** The MP4: a genuine 1 s clip from the bundled ffmpeg, padded with a `free` box to FILE_SIZE. */
async function makeFixture(dir: string): Promise<string> {
  const clip = path.join(dir, 'clip.mp4');
  await promisify(execFile)(ffmpegPath(), [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', 'testsrc=size=64x64:rate=10:duration=1',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', clip,
  ]);
  const file = path.join(dir, 'reference-video.mp4');
  await writeFile(file, padMp4(await readFile(clip), FILE_SIZE));
  return file;
}

describe.skipIf(chromiumSkipped)('Uppy in headless Chromium (issue 13)', () => {
  let tmp: string;
  let fixture: string;

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'keyframe-browser-'));
    fixture = await makeFixture(tmp);
  }, 120_000);

  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  describe.each(VERSIONS)('Uppy $major', (version) => {
    let script: string;

    beforeAll(async () => {
      const modules = path.join(HERE, version.packageDir, 'node_modules');
      if (!existsSync(path.join(modules, '@uppy', 'aws-s3'))) {
        throw new Error(`Uppy ${version.major} is not installed: run npm ci --prefix test/browser/${version.packageDir}`);
      }
      const bundled = await build({
        entryPoints: [path.join(HERE, version.entry)],
        bundle: true,
        write: false,
        format: 'iife',
        platform: 'browser',
        target: 'es2022',
        nodePaths: [modules],
        logLevel: 'silent',
      });
      script = bundled.outputFiles[0]!.text;
    }, 60_000);

    describe.each(['disk', 's3'] as const)('%s store', (storeKind) => {
      describe.skipIf(storeKind === 's3' && rgw.skip)('upload', () => {
        let page: { origin: string; close(): Promise<void> };
        let server: TestServer;
        let browser: Awaited<ReturnType<typeof launchChromium>>;
        let context: BrowserContext;

        beforeAll(async () => {
          page = await startPageServer({
            '/': { type: 'text/html; charset=utf-8', body: await readFile(path.join(HERE, 'page', 'index.html')) },
            '/page.js': { type: 'text/javascript; charset=utf-8', body: script },
          });
          server = await startServerOn(storeKind, rgw, 'browser', {
            ...QUOTAS_LIFTED,
            KEYFRAME_CORS_ORIGINS: page.origin,
            S3_APPLY_CORS: 'true',
          });
          // Fails (CI=true) with the install command when there is no Chromium.
          browser = await launchChromium();
          context = browser.context;
        }, 120_000);

        afterAll(async () => {
          await browser?.close();
          await server?.stop();
          await page?.close();
        }, 120_000);

        it(`uploads a ${Math.round(FILE_SIZE / MiB)} MiB MP4 in parts; verified; a generation uses it as sourceVideoKey`, async () => {
          const { key: apiKey } = await server.createKey('alice');
          const tab = await context.newPage();
          const consoleLines: string[] = [];
          tab.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
          tab.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
          await tab.goto(`${page.origin}/`);
          await tab.evaluate(([endpoint, k]) => window.startUppy(endpoint!, k!), [`${server.url}/api`, apiKey]);
          await tab.setInputFiles('#file', fixture);
          try {
            await tab.waitForFunction(() => window.uppyResult !== undefined, null, { timeout: 300_000, polling: 500 });
          } catch (err) {
            const events = await tab.evaluate(() => window.uppyEvents).catch(() => []);
            throw new Error(`Uppy did not complete: ${(err as Error).message}\nevents: ${events.join('\n')}\nconsole: ${consoleLines.join('\n')}`);
          }
          const result = (await tab.evaluate(() => window.uppyResult)) as {
            successful: { name: string; size: number; s3Multipart: { uploadId: string; key: string } | null; response: { body?: { key?: string } } | null }[];
            failed: { name: string; error: string }[];
          };
          const parts = await tab.evaluate(() => window.uppyParts);
          await tab.close();
          expect(result.failed, JSON.stringify({ result, consoleLines })).toEqual([]);
          expect(result.successful).toHaveLength(1);
          const uploaded = result.successful[0]!;
          expect(uploaded.size).toBe(FILE_SIZE);
          const key = uploaded.response?.body?.key ?? '';
          expect(key).toMatch(/^users\/alice\/user-uploads\/.+\.mp4$/);
          // Multipart, not a single PUT: Uppy reported every part of the plan (Uppy 5 and 6 cut parts of
          // max(5 MiB, ceil(size / 10000)), Keyframe's plan: 33 here), and the record was made by the multipart create.
          expect([...parts].sort((a, b) => a - b)).toEqual(Array.from({ length: Math.ceil(FILE_SIZE / (5 * MiB)) }, (_, i) => i + 1));
          const row = await server.db.selectFrom('uploads').select(['multipart_upload_id']).where('s3_key', '=', key).executeTakeFirstOrThrow();
          expect(row.multipart_upload_id).toEqual(expect.any(String));
          // Uppy 5 keeps the upload's id on the file (Uppy 6 clears it on success).
          if (uploaded.s3Multipart) expect(uploaded.s3Multipart).toEqual({ uploadId: row.multipart_upload_id, key });

          const status = await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(key)}`, { key: apiKey });
          expect(status.body, JSON.stringify(status.body)).toMatchObject({ state: 'verified', size: FILE_SIZE, content_type: 'video/mp4', media: { width: 64, height: 64, video_codec: 'h264' } });

          const generation = await server.api('POST', '/api/generations', {
            key: apiKey,
            body: { prompt: 'from the browser', modelName: 'keyframe-local', aspectRatio: '1:1', resolution: '480p', duration: '1s', sourceVideoKey: key },
          });
          expect(generation.status, JSON.stringify(generation.body)).toBe(200);
          const done = await waitForGeneration(server.api, apiKey, generation.body.generations[0].generation_id, 120_000);
          expect(done.body, JSON.stringify(done.body)).toMatchObject({ status: 'completed', error: null });
          const video = await fetch(done.body.video_url);
          expect(video.status).toBe(200);
          const bytes = Buffer.from(await video.arrayBuffer());
          expect(bytes.subarray(4, 8).toString('latin1')).toBe('ftyp');
        }, 480_000);

        it('uploads a small PNG by single PUT through /api/s3/params; verified', async () => {
          const { key: apiKey } = await server.createKey('bob');
          const tab = await context.newPage();
          const consoleLines: string[] = [];
          tab.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
          tab.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
          // What Keyframe's /api/s3/params answered: Uppy 5 keeps no key for a single PUT (it reads
          // `fields.key`, and Keyframe answers `fields: {}`), so the key is taken from that answer.
          const params: Promise<any>[] = [];
          const multipartCalls: string[] = [];
          tab.on('response', (res) => {
            const { pathname } = new URL(res.url());
            if (pathname === '/api/s3/params') params.push(res.json().catch((err: Error) => ({ error: err.message })));
            if (pathname.startsWith('/api/s3/multipart')) multipartCalls.push(`${res.request().method()} ${pathname}`);
          });
          await tab.goto(`${page.origin}/`);
          await tab.evaluate(([endpoint, k]) => window.startUppy(endpoint!, k!), [`${server.url}/api`, apiKey]);
          await tab.setInputFiles('#file', SMALL_FIXTURE);
          try {
            await tab.waitForFunction(() => window.uppyResult !== undefined, null, { timeout: 60_000, polling: 250 });
          } catch (err) {
            const events = await tab.evaluate(() => window.uppyEvents).catch(() => []);
            throw new Error(`Uppy did not complete: ${(err as Error).message}\nevents: ${events.join('\n')}\nconsole: ${consoleLines.join('\n')}`);
          }
          const result = (await tab.evaluate(() => window.uppyResult)) as {
            successful: { name: string; size: number; uploadURL: string | null; response: { body?: { key?: string; location?: string }; uploadURL?: string } | null }[];
            failed: { name: string; error: string }[];
          };
          const parts = await tab.evaluate(() => window.uppyParts);
          const answers = await Promise.all(params);
          await tab.close();
          expect(result.failed, JSON.stringify({ result, consoleLines })).toEqual([]);
          expect(result.successful).toHaveLength(1);
          const uploaded = result.successful[0]!;
          expect(uploaded.size).toBe(SMALL_SIZE);
          // A single PUT: one /api/s3/params and no multipart route at all.
          expect(answers, JSON.stringify(answers)).toHaveLength(1);
          expect(multipartCalls).toEqual([]);
          expect(answers[0]).toMatchObject({ method: 'PUT', headers: { 'content-type': 'image/png' } });
          const key: string = answers[0].key;
          expect(key).toMatch(/^users\/bob\/user-uploads\/.+\.png$/);
          // No parts: Uppy 6 reports none; Uppy 5 reports its one PUT as "part 1" (its single-PUT chunk
          // goes through the same s3-multipart:part-uploaded event).
          expect(parts).toEqual(version.major === 5 ? [1] : []);
          // Uppy 6 reports the key the signer answered; Uppy 5 reports none (above). Both point the upload URL at it.
          if (version.major === 6) expect(uploaded.response?.body?.key).toBe(key);
          const uploadURL = uploaded.response?.uploadURL ?? uploaded.uploadURL ?? '';
          expect(decodeURIComponent(uploadURL), uploadURL).toContain(key);
          const row = await server.db.selectFrom('uploads').select(['multipart_upload_id']).where('s3_key', '=', key).executeTakeFirstOrThrow();
          expect(row.multipart_upload_id).toBeNull();

          const status = await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(key)}`, { key: apiKey });
          expect(status.body, JSON.stringify(status.body)).toMatchObject({ state: 'verified', size: SMALL_SIZE, content_type: 'image/png' });
        }, 120_000);
      });
    });
  });
});
