import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { openDatabase } from '../src/db/database.js';
import { Uploads } from '../src/domain/uploads.js';
import { SNIFF_BYTES, Verifier } from '../src/domain/verification.js';
import { FfprobeMediaProbe } from '../src/media/ffprobe.js';
import { DiskStore } from '../src/storage/disk/disk-store.js';
import { CountingStore } from '../test/helpers/counting-store.js';
import { dataDirWithKey } from './lib/keys.js';
import { ROOT, startKeyframe } from './lib/processes.js';
import { summarise, type Summary } from './lib/stats.js';

const run = promisify(execFile);
const ffmpeg = (createRequire(import.meta.url)('@ffmpeg-installer/ffmpeg') as { path: string }).path;

export interface VerificationResult {
  references: number;
  objectBytes: number;
  /** ms per `Verifier.status` call, first verification and cached (second call). */
  firstMs: Summary;
  cachedMs: Summary;
  /** Bytes the verifier asked the store for by range, per verification: at most SNIFF_BYTES here. */
  maxBytesRead: number;
  /** Bytes copied (pinned to the ETag) into the scratch file for the ffprobe probe, per verification: the whole object. */
  bytesCopied: number;
  sniffBytes: number;
  storeCallsFirst: number;
  storeCallsCached: number;
  /** Over HTTP against `keyframe serve`: ms per Create Generation with 10 fresh references, and per presign (reference). */
  generationMs: Summary | null;
  presignMs: Summary | null;
  generationNote: string;
}

/**
 * Verification cost in-process (a real DiskStore behind a counting delegate, a
 * real database): N references of a multi-megabyte PNG, verified once and then
 * asked again (cached). Then, over HTTP, Create Generation with 10 fresh
 * references (start, end and 8 ingredient images) against presign on the same server.
 */
export async function benchVerification(references: number, generations: number, options: { http?: boolean } = {}): Promise<VerificationResult> {
  const work = await mkdtemp(path.join(tmpdir(), 'keyframe-bench-verify-'));
  const big = path.join(work, 'noise.png');
  // A 1024×1024 noise image: PNG cannot compress it, so the object is megabytes.
  await run(ffmpeg, ['-v', 'error', '-f', 'lavfi', '-i', 'nullsrc=s=1024x1024,geq=random(1)*255:random(2)*255:random(3)*255', '-frames:v', '1', big]);
  const objectBytes = (await stat(big)).size;
  const db = await openDatabase(work);
  const disk = new DiskStore({ root: work, publicUrl: 'http://127.0.0.1:1', signingSecret: 'b'.repeat(32) });
  await disk.init();
  const counting = new CountingStore(disk);
  try {
    const uploads = new Uploads(db, counting, 900);
    const verifier = new Verifier(db, counting, { scratchDir: path.join(work, 'tmp', 'verify'), probe: new FfprobeMediaProbe() });
    await db.insertInto('users').values({ id: 'bench', webhook_secret: 'whsec_bench', created_at: new Date().toISOString() }).execute();
    const keys: string[] = [];
    for (let i = 0; i < references; i++) {
      const { s3_key: key } = await uploads.presign('bench', { kind: 'upload', contentType: 'image/png' });
      await counting.put(key, createReadStream(big), 'image/png');
      const info = await counting.head(key);
      await uploads.recordArrival({ key, size: info!.size, sha256: info!.sha256 ?? '', contentType: 'image/png' });
      keys.push(key);
    }
    const timed = async (key: string) => {
      const start = process.hrtime.bigint();
      const status = await verifier.status('bench', key);
      if (status?.state !== 'verified') throw new Error(`verification of the bench PNG said ${JSON.stringify(status)}`);
      return Number(process.hrtime.bigint() - start) / 1e6;
    };
    const before = counting.calls.length;
    const first = [];
    for (const key of keys) first.push(await timed(key));
    const firstCalls = counting.calls.slice(before);
    const cached = [];
    const beforeCached = counting.calls.length;
    for (const key of keys) cached.push(await timed(key));
    const cachedCalls = counting.calls.length - beforeCached;
    const ranges = firstCalls.filter((c) => c.method === 'getRange').map((c) => Math.min(Number(c.args[2]) + 1, objectBytes) - Number(c.args[1]));

    const copies = firstCalls.filter((c) => c.method === 'openVerified').length;
    const http =
      options.http === false
        ? { generationMs: null, presignMs: null, generationNote: 'not measured (in-process run only)' }
        : await benchCreateGeneration(generations);
    return {
      references,
      objectBytes,
      firstMs: summarise(first),
      cachedMs: summarise(cached),
      maxBytesRead: Math.max(...ranges),
      bytesCopied: (copies / references) * objectBytes,
      sniffBytes: SNIFF_BYTES,
      storeCallsFirst: firstCalls.length / references,
      storeCallsCached: cachedCalls / references,
      ...http,
    };
  } finally {
    await db.destroy();
    await rm(work, { recursive: true, force: true });
  }
}

async function benchCreateGeneration(count: number) {
  const { dataDir, key } = await dataDirWithKey('generate');
  const server = await startKeyframe('keyframe', dataDir, { LOG_LEVEL: 'warn' });
  const png = await readFile(path.join(ROOT, 'test/fixtures/media/sample.png'));
  const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const ms = async (f: () => Promise<Response>) => {
    const start = process.hrtime.bigint();
    const res = await f();
    const body = await res.text();
    if (res.status >= 300) throw new Error(`answered ${res.status}: ${body}`);
    return { ms: Number(process.hrtime.bigint() - start) / 1e6, body };
  };
  const presignOnce = () => fetch(`${server.url}/api/s3/presign-upload`, { method: 'POST', headers: auth, body: '{"kind":"upload","contentType":"image/png"}' });
  try {
    const probe = await fetch(`${server.url}/api/generations`, { method: 'POST', headers: auth, body: '{}' });
    if (probe.status === 404) return { generationMs: null, presignMs: null, generationNote: 'POST /api/generations does not exist in this build' };
    const gen: number[] = [];
    const pre: number[] = [];
    for (let i = 0; i < count; i++) {
      const refs: string[] = [];
      for (let r = 0; r < 10; r++) {
        const { ms: t, body } = await ms(presignOnce);
        pre.push(t);
        const { s3_key: s3Key, upload_url: url } = JSON.parse(body) as { s3_key: string; upload_url: string };
        const put = await fetch(url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: png });
        if (put.status !== 200) throw new Error(`reference upload answered ${put.status}`);
        refs.push(s3Key);
      }
      const body = JSON.stringify({
        prompt: 'bench',
        modelName: 'keyframe-local',
        duration: '1s',
        resolution: '480p',
        startFrameKey: refs[0],
        endFrameKey: refs[1],
        ingredientImageKeys: refs.slice(2),
      });
      gen.push((await ms(() => fetch(`${server.url}/api/generations`, { method: 'POST', headers: auth, body }))).ms);
    }
    return {
      generationMs: summarise(gen),
      presignMs: summarise(pre),
      generationNote: `${count} Create Generation requests, each with 10 fresh references (verified on the way), sequential; the local runner renders meanwhile`,
    };
  } finally {
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}
