import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

/** Debian's chromium (`apt-get install -y chromium`); `playwright install` cannot run here. */
export const CHROMIUM = process.env.KEYFRAME_TEST_CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_INSTALL = 'apt-get install -y chromium';
const CI = process.env.CI === 'true';

/**
 * Whether a browser suite skips: locally, loudly, when there is no Chromium; under CI=true never
 * (the suite's beforeAll then fails through `launchChromium`).
 */
export function chromiumSkip(suite: string): boolean {
  const missing = !existsSync(CHROMIUM);
  if (missing && !CI) {
    console.warn(`\n!!! ${suite}: SKIPPED: no Chromium at ${CHROMIUM}.\n!!! Install it with: ${CHROMIUM_INSTALL}\n!!! (under CI=true this suite fails instead)\n`);
  }
  return missing && !CI;
}

/** A headless Chromium with a fresh profile, closed (profile removed) by `close`. */
export async function launchChromium(): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (CI=true: the browser suites must run). Install it with: ${CHROMIUM_INSTALL}`);
  const userDataDir = await mkdtemp(path.join(os.tmpdir(), 'keyframe-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    // Without the background-networking flags Chromium keeps trying hosts this closed network refuses.
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync',
    ],
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Where browser tests leave their screenshots (gitignored; CI keeps the folder). */
export const ARTEFACTS_DIR = path.resolve('test-artefacts');

/** One file a page server answers: its type and bytes. */
export interface PageFile {
  type: string;
  body: string | Buffer;
}

/**
 * Serves `files` (by path, `/` for the page itself) from 127.0.0.1, on a port of its own: the
 * page's origin, which the Keyframe under test allows in its CORS settings. Anything else is 404.
 */
export async function startPageServer(files: Record<string, PageFile>): Promise<{ origin: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const file = files[req.url ?? '/'];
    if (file) res.writeHead(200, { 'content-type': file.type }).end(file.body);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { origin: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
