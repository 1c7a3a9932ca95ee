import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/free-port.js';
import { ensureConsoleBuilt } from '../helpers/console-build.js';
import { rgwForTests, startServerOn } from '../helpers/rgw.js';
import { QUOTAS_LIFTED, type TestServer } from '../helpers/server.js';
import { ARTEFACTS_DIR, chromiumSkip, launchChromium } from './support/chromium.js';

// The browser console (/console) in headless Chromium, against a real server on the disk store
// and on RGW (there uploads are PUT and videos played cross-origin, which the page's CSP allows):
// paste a key; drop a PNG and an MP3 on the drop zone (a real drop event carrying a DataTransfer)
// and pick an MP4 with the file input; all three verified, with their media shown; the form
// follows the selected model; keyframe-local makes a video from the PNG (start frame) and the MP3
// (audio), shown as its status changes, then played by a <video> of the page. Every request the
// page makes goes to 127.0.0.1, and its CSP refuses nothing the page does.

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MEDIA = path.join(HERE, '..', 'fixtures', 'media');
const skipped = chromiumSkip('browser console suite');
const rgw = await rgwForTests('browser console suite (S3)');

/** keyframe-local's shortest duration (config/models.json: 1s to 20s). */
const DURATION_SECONDS = 1;

describe.skipIf(skipped).each(['disk', 's3'] as const)('the browser console in headless Chromium, %s store', (storeKind) => {
  let server: TestServer;
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  const screenshot = (page: Page, name: string) =>
    page.screenshot({ path: path.join(ARTEFACTS_DIR, `console-${storeKind}-${name}.png`), fullPage: true });

  beforeAll(async () => {
    if (storeKind === 's3' && rgw.skip) return;
    await ensureConsoleBuilt();
    await mkdir(ARTEFACTS_DIR, { recursive: true });
    // On S3 the page PUTs to the bucket from its own origin, which the bucket's CORS rule must
    // name: the port is chosen first so that the origin is known before the server starts.
    const port = await freePort('127.0.0.1');
    server = await startServerOn(storeKind, rgw, 'console', {
      ...QUOTAS_LIFTED,
      PORT: String(port),
      ...(storeKind === 's3' ? { KEYFRAME_CORS_ORIGINS: `http://127.0.0.1:${port}`, S3_APPLY_CORS: 'true' } : {}),
    });
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  }, 60_000);

  it.skipIf(storeKind === 's3' && rgw.skip)('uploads by drop and by picker, shows verification and media, and plays the video keyframe-local made of them', async () => {
    const { key: apiKey } = await server.createKey('alice');
    const page = await browser.context.newPage();
    const problems: string[] = [];
    const requests: string[] = [];
    const generationBodies: unknown[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('request', (r) => {
      requests.push(r.url());
      if (r.method() === 'POST' && new URL(r.url()).pathname === '/api/generations') generationBodies.push(r.postDataJSON());
    });

    await page.goto(`${server.url}/console`);
    await expect.poll(() => page.locator('#key-state').getAttribute('data-state')).toBe('none');

    // 1. The key: used at once (the model list loads), kept in sessionStorage only.
    await page.getByLabel('API key', { exact: true }).fill(apiKey);
    await page.click('#key-use');
    await page.waitForSelector('#model option[value="keyframe-local"]', { state: 'attached' });
    expect(await page.evaluate(() => ({ session: Object.values(sessionStorage), local: Object.values(localStorage) }))).toEqual({
      session: [apiKey],
      local: [],
    });
    // A reload keeps it (same tab).
    await page.reload();
    await page.waitForSelector('#model option[value="keyframe-local"]', { state: 'attached' });
    expect(await page.inputValue('#api-key')).toBe(apiKey);

    // 2. A PNG and an MP3 dropped together, as a drag from the desktop delivers them.
    const files = await Promise.all(
      [
        ['sample.png', 'image/png'],
        ['sample.mp3', 'audio/mpeg'],
      ].map(async ([name, type]) => ({ name: name!, type: type!, base64: (await readFile(path.join(MEDIA, name!))).toString('base64') })),
    );
    await page.evaluate((dropped) => {
      const transfer = new DataTransfer();
      for (const f of dropped) transfer.items.add(new File([Uint8Array.from(atob(f.base64), (c) => c.charCodeAt(0))], f.name, { type: f.type }));
      const zone = document.getElementById('drop-zone')!;
      zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true }));
      zone.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }, files);
    // And an MP4 chosen with the file input.
    await page.setInputFiles('#file-input', path.join(MEDIA, 'sample.mp4'));

    const settled = () =>
      page.$$eval('#uploads li', (items) => items.map((li) => ({ name: (li as HTMLElement).dataset.fileName, state: (li as HTMLElement).dataset.state })));
    await page.waitForFunction(
      () => {
        const items = [...document.querySelectorAll<HTMLElement>('#uploads li')];
        return items.length === 3 && items.every((li) => ['verified', 'rejected', 'expired', 'failed'].includes(li.dataset.state ?? ''));
      },
      null,
      { timeout: 60_000, polling: 200 },
    );
    const uploads = await page.$$eval('#uploads li', (items) =>
      items.map((li) => ({
        name: (li as HTMLElement).dataset.fileName,
        state: (li as HTMLElement).dataset.state,
        key: (li as HTMLElement).dataset.key,
        details: li.querySelector('.details')?.textContent,
        progress: [(li.querySelector('progress') as HTMLProgressElement).value, (li.querySelector('progress') as HTMLProgressElement).max],
      })),
    );
    expect(uploads.map((u) => u.state), JSON.stringify({ uploads, problems })).toEqual(['verified', 'verified', 'verified']);
    const byName = Object.fromEntries(uploads.map((u) => [u.name, u]));
    // The progress bars ran to the end, and the media verification found is shown.
    for (const u of uploads) expect(u.progress[0]).toBe(u.progress[1]);
    expect(byName['sample.png']!.details).toBe('16×16 · png');
    expect(byName['sample.mp3']!.details).toMatch(/^0\.\d\d s · mp3$/);
    expect(byName['sample.mp4']!.details).toMatch(/^32×32 · 0\.\d\d s · h264/);
    await screenshot(page, 'uploaded');

    // 3. The form follows the model: sora-2 takes a start frame only, in its listed durations.
    await page.selectOption('#model', 'sora-2');
    expect(await page.$$eval('#duration option', (o) => o.map((x) => (x as HTMLOptionElement).value))).toEqual(['4s', '8s', '12s']);
    expect(await page.$$eval('#reference-fields select', (s) => s.map((x) => x.id))).toEqual(['ref-startFrameKey']);
    await page.selectOption('#model', 'keyframe-local');
    expect(await page.$$eval('#reference-fields select', (s) => s.map((x) => x.id))).toEqual([
      'ref-startFrameKey', 'ref-endFrameKey', 'ref-ingredientImageKeys', 'ref-characterReferenceImageKeys',
      'ref-sourceVideoKey', 'ref-referenceVideoKeys', 'ref-audioKey',
    ]);
    expect(await page.$$eval('#duration option', (o) => o.length)).toBe(20);
    // Each reference field offers the verified uploads of its family only.
    const offered = (id: string) => page.$$eval(`#${id} option`, (o) => o.map((x) => x.textContent));
    expect(await offered('ref-startFrameKey')).toEqual(['(none)', 'sample.png']);
    expect(await offered('ref-sourceVideoKey')).toEqual(['(none)', 'sample.mp4']);
    expect(await offered('ref-audioKey')).toEqual(['(none)', 'sample.mp3']);

    // 4. Generate, watching the status the page shows.
    await page.fill('#prompt', 'a test pattern, with a tone');
    await page.selectOption('#duration', `${DURATION_SECONDS}s`);
    await page.selectOption('#resolution', '480p');
    await page.selectOption('#aspect-ratio', '1:1');
    await page.selectOption('#ref-startFrameKey', { label: 'sample.png' });
    await page.selectOption('#ref-audioKey', { label: 'sample.mp3' });
    await page.check('#has-audio');
    await page.evaluate(() => {
      const state = document.getElementById('generation-state')!;
      const seen: string[] = ((window as unknown as { seenStates: string[] }).seenStates = []);
      new MutationObserver(() => {
        const s = state.dataset.state ?? '';
        if (seen.at(-1) !== s) seen.push(s);
      }).observe(state, { attributes: true, attributeFilter: ['data-state'] });
    });
    await page.click('#generate');
    await page.waitForSelector('#generation-state[data-state="completed"], #generation-state[data-state="failed"]', { timeout: 180_000 });
    const seen = await page.evaluate(() => (window as unknown as { seenStates: string[] }).seenStates);
    const shown = await page.textContent('#generation-state');
    expect(seen, JSON.stringify({ seen, shown, error: await page.textContent('#error'), problems })).toEqual(['submitting', 'generating', 'completed']);
    expect(generationBodies).toEqual([
      {
        prompt: 'a test pattern, with a tone',
        modelName: 'keyframe-local',
        duration: `${DURATION_SECONDS}s`,
        resolution: '480p',
        aspectRatio: '1:1',
        hasAudio: true,
        startFrameKey: byName['sample.png']!.key,
        audioKey: byName['sample.mp3']!.key,
      },
    ]);

    // 5. The video: loaded, of the requested length, and it plays (keyframe-local renders H.264 in MP4).
    await page.waitForSelector('#result-video');
    const loaded = await page.evaluate(async () => {
      const video = document.getElementById('result-video') as HTMLVideoElement;
      await new Promise<void>((resolve, reject) => {
        if (video.readyState >= 2) return resolve();
        video.addEventListener('loadeddata', () => resolve(), { once: true });
        video.addEventListener('error', () => reject(new Error(`video error ${video.error?.code}: ${video.error?.message}`)), { once: true });
      });
      return { readyState: video.readyState, duration: video.duration, width: video.videoWidth, height: video.videoHeight, src: video.currentSrc };
    });
    expect(loaded.readyState).toBeGreaterThanOrEqual(2);
    expect(Math.abs(loaded.duration - DURATION_SECONDS), JSON.stringify(loaded)).toBeLessThanOrEqual(0.5);
    expect(loaded.width).toBe(loaded.height); // 1:1
    // Played from the store: RGW's origin on S3, the server's own on the disk store.
    expect(new URL(loaded.src).origin).toBe(new URL(storeKind === 's3' ? rgw.endpoint : server.url).origin);
    const played = await page.evaluate(async () => {
      const video = document.getElementById('result-video') as HTMLVideoElement;
      video.muted = true; // headless autoplay policy: a muted video may play without a gesture
      await video.play();
      await new Promise<void>((resolve) => {
        const check = () => (video.currentTime > 0 || video.ended ? resolve() : requestAnimationFrame(check));
        check();
      });
      return { currentTime: video.currentTime, ended: video.ended, error: video.error?.code ?? null };
    });
    expect(played.error).toBeNull();
    expect(played.currentTime).toBeGreaterThan(0);
    await screenshot(page, 'played');

    // Forgetting the key clears it from the tab and from the page.
    await page.click('#key-forget');
    expect(await page.evaluate(() => Object.values(sessionStorage))).toEqual([]);
    expect(await page.inputValue('#api-key')).toBe('');
    expect(await page.getAttribute('#key-state', 'data-state')).toBe('none');
    // And the uploads, which were that key's user's.
    expect(await page.$$eval('#uploads li', (items) => items.length)).toBe(0);
    expect(await page.isDisabled('#file-input')).toBe(true);

    // Loopback only, and nothing refused by the CSP or failed in the page.
    const elsewhere = requests.filter((u) => {
      const url = new URL(u);
      return !(url.protocol === 'blob:' || url.protocol === 'data:' || url.hostname === '127.0.0.1');
    });
    expect(elsewhere).toEqual([]);
    expect(requests.filter((u) => u.startsWith('http')).length).toBeGreaterThan(5);
    expect(problems).toEqual([]);
    await page.close();
  }, 300_000);

  it.skipIf(storeKind === 's3' && rgw.skip)('shows the envelope message of a refused key', async () => {
    const page = await browser.context.newPage();
    await page.goto(`${server.url}/console`);
    await page.fill('#api-key', 'prism_sk_not_a_key');
    await page.click('#key-use');
    await page.waitForSelector('#error:not([hidden])');
    expect(await page.textContent('#error')).toBe('Invalid or missing API key');
    expect(await page.$$eval('#model option', (o) => o.length)).toBe(0);
    await page.close();
  }, 60_000);
});
