/**
 * Multipart upload (issue 13) vs the single PUT, on the disk store and on Ceph RGW, in the same
 * run: one video (200 MiB; BENCH_QUICK: 20 MiB) as 8 MiB parts with 4 in flight through Keyframe's
 * Companion-compatible routes (create, one batch of part URLs, the PUTs by curl, the server's
 * complete), next to one presigned PUT of the same file by curl. MiB/s is size over the time
 * from the first request to the last answer (for multipart: create to complete, so it includes
 * the server's size check and, on disk, the assembly with its SHA-256 pass). The Keyframe
 * server's peak RSS growth is sampled from /proc every 5 ms during each upload. Rounds alternate
 * the two ways; the ratio multipart / single is taken per round.
 *
 * Part of `npm run bench`; alone: `BENCH_MULTIPART_ALONE=1 npx vite-node bench/multipart.ts`
 * (BENCH_QUICK=1 for a smoke run), which writes bench/results/<timestamp>-multipart.json.
 * Needs dist/ (npm run build): the server is the real `keyframe serve`.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { removeBucket, rgwForTests, uniqueBucketName, type RgwSettings } from '../test/helpers/rgw.js';
import { curlPut } from './lib/curl.js';
import { dataDirWithKey } from './lib/keys.js';
import { ROOT, startKeyframe, withPeakRss, type ChildServer } from './lib/processes.js';
import { fmt, summarise, type Summary } from './lib/stats.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

export interface MultipartBenchOptions {
  sizeMiB: number;
  partMiB: number;
  inFlight: number;
  rounds: number;
  log: (line: string) => void;
}

export interface MultipartStoreResult {
  store: 'disk' | 'rgw';
  /** MiB/s. */
  single: Summary;
  multipart: Summary;
  /** multipart / single, per round. */
  ratio: Summary;
  singleRssGrowthMiB: Summary;
  multipartRssGrowthMiB: Summary;
  /** Seconds of the multipart time spent in the complete call (on disk: the assembly and its SHA-256 pass). */
  completeSeconds: Summary;
}

export interface MultipartBenchResult {
  sizeMiB: number;
  partMiB: number;
  inFlight: number;
  disk: MultipartStoreResult;
  /** Null when RGW is not reachable (`rgwNote` says so). */
  rgw: MultipartStoreResult | null;
  rgwNote: string;
  table: string;
}

export async function benchMultipart(options: MultipartBenchOptions): Promise<MultipartBenchResult> {
  const work = await mkdtemp(path.join(tmpdir(), 'keyframe-bench-multipart-'));
  try {
    const source = path.join(work, 'source.bin');
    await run('dd', ['if=/dev/urandom', `of=${source}`, 'bs=1M', `count=${options.sizeMiB}`, 'status=none']);
    // The parts as files, so that curl streams each from disk as it streams the single PUT's.
    const partCount = Math.ceil(options.sizeMiB / options.partMiB);
    const parts: string[] = [];
    for (let i = 0; i < partCount; i++) {
      const file = path.join(work, `part-${i + 1}.bin`);
      await run('dd', [`if=${source}`, `of=${file}`, `bs=${MiB}`, `skip=${i * options.partMiB}`, `count=${options.partMiB}`, 'status=none']);
      parts.push(file);
    }
    const disk = await benchOneStore('disk', null, source, parts, options);
    const rgw = await rgwForTests('multipart bench');
    let rgwResult: MultipartStoreResult | null = null;
    let rgwNote = `Ceph RGW at ${rgw.endpoint}`;
    if (rgw.reachable) rgwResult = await benchOneStore('rgw', rgw, source, parts, options);
    else rgwNote = `Ceph RGW not reachable at ${rgw.endpoint} (start it with scripts/ceph-rgw.sh)`;
    return { sizeMiB: options.sizeMiB, partMiB: options.partMiB, inFlight: options.inFlight, disk, rgw: rgwResult, rgwNote, table: multipartTable(options, disk, rgwResult, rgwNote) };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function benchOneStore(
  store: 'disk' | 'rgw',
  rgw: RgwSettings | null,
  source: string,
  parts: string[],
  options: MultipartBenchOptions,
): Promise<MultipartStoreResult> {
  const kf = await dataDirWithKey(`multipart-${store}`);
  const bucket = rgw ? uniqueBucketName('bench-mp') : null;
  const env: Record<string, string> = rgw
    ? {
        KEYFRAME_STORAGE: 's3',
        S3_ENDPOINT: rgw.endpoint,
        S3_REGION: rgw.region,
        S3_BUCKET: bucket!,
        S3_ACCESS_KEY_ID: rgw.accessKeyId,
        S3_SECRET_ACCESS_KEY: rgw.secretAccessKey,
        S3_FORCE_PATH_STYLE: rgw.forcePathStyle,
        S3_CREATE_BUCKET: 'true',
      }
    : {};
  let server: ChildServer | null = null;
  try {
    server = await startKeyframe(`keyframe (${store})`, kf.dataDir, env);
    const api = apiOf(server.url, kf.key);
    const runs = { single: [] as number[], multipart: [] as number[], singleRss: [] as number[], multipartRss: [] as number[], complete: [] as number[] };
    for (let round = 1; round <= options.rounds; round++) {
      // Alternate which way goes first, so neither always runs on a warmer cache.
      const order = round % 2 === 1 ? (['single', 'multipart'] as const) : (['multipart', 'single'] as const);
      for (const way of order) {
        const pid = server.pid;
        const measured = await sampled(pid, () =>
          way === 'single' ? singlePut(api, source) : multipartUpload(api, parts, options.inFlight, (s) => runs.complete.push(s)),
        );
        runs[way].push(options.sizeMiB / measured.seconds);
        runs[way === 'single' ? 'singleRss' : 'multipartRss'].push(measured.rssGrowth / MiB);
      }
      options.log(
        `multipart ${store} round ${round}: single PUT ${runs.single.at(-1)!.toFixed(0)} MiB/s (+${runs.singleRss.at(-1)!.toFixed(1)} MiB RSS), ` +
          `${parts.length} × ${options.partMiB} MiB, ${options.inFlight} in flight ${runs.multipart.at(-1)!.toFixed(0)} MiB/s (+${runs.multipartRss.at(-1)!.toFixed(1)} MiB RSS, complete ${runs.complete.at(-1)!.toFixed(2)} s)`,
      );
    }
    return {
      store,
      single: summarise(runs.single),
      multipart: summarise(runs.multipart),
      ratio: summarise(runs.multipart.map((m, i) => m / runs.single[i]!)),
      singleRssGrowthMiB: summarise(runs.singleRss),
      multipartRssGrowthMiB: summarise(runs.multipartRss),
      completeSeconds: summarise(runs.complete),
    };
  } finally {
    await server?.stop();
    await rm(kf.dataDir, { recursive: true, force: true });
    if (rgw && bucket) await removeBucket(rgw, bucket).catch(() => undefined);
  }
}

type Api = (method: string, pathname: string, body?: unknown) => Promise<any>;

function apiOf(base: string, key: string): Api {
  return async (method, pathname, body) => {
    const res = await fetch(base + pathname, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(120_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${pathname} answered ${res.status}: ${text}`);
    return text === '' ? null : JSON.parse(text);
  };
}

/** Presign, then one PUT of the whole file by curl (as bench/ingest.ts). Seconds from the presign to the PUT's answer. */
async function singlePut(api: Api, source: string): Promise<number> {
  const start = process.hrtime.bigint();
  const { upload_url: url } = await api('POST', '/api/s3/presign-upload', { kind: 'upload', contentType: 'video/mp4' });
  const put = await curlPut(url, source, 'video/mp4');
  if (put.status !== 200) throw new Error(`single PUT answered ${put.status}`);
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Create (no declared size: the client's 8 MiB parts), one batch of part URLs, the PUTs `inFlight` at a time, complete. */
async function multipartUpload(api: Api, parts: string[], inFlight: number, onComplete: (seconds: number) => void): Promise<number> {
  const start = process.hrtime.bigint();
  const { uploadId, key } = await api('POST', '/api/s3/multipart', { filename: 'bench.mp4', type: 'video/mp4' });
  const base = `/api/s3/multipart/${encodeURIComponent(uploadId)}`;
  const q = `key=${encodeURIComponent(key)}`;
  const numbers = parts.map((_, i) => i + 1);
  const { presignedUrls } = await api('GET', `${base}/batch?${q}&partNumbers=${numbers.join(',')}`);
  const etags: string[] = [];
  let next = 0;
  const lane = async () => {
    while (next < parts.length) {
      const i = next++;
      const put = await curlPutPart(presignedUrls[String(i + 1)], parts[i]!);
      if (put.status !== 200 || !put.etag) throw new Error(`part ${i + 1} answered ${put.status}`);
      etags[i] = put.etag;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  const completing = process.hrtime.bigint();
  await api('POST', `${base}/complete?${q}`, { parts: etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })) });
  onComplete(Number(process.hrtime.bigint() - completing) / 1e9);
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** PUTs one part file with curl, as a browser sends a Blob slice (no Content-Type); status and the ETag answered. */
function curlPutPart(url: string, file: string): Promise<{ status: number; etag: string | null }> {
  return new Promise((resolve, reject) => {
    execFile(
      'curl',
      ['-sS', '-o', '/dev/null', '-w', '%{http_code} %header{etag}', '-T', file, '-H', 'Content-Type:', '-H', 'Expect:', url],
      { timeout: 120_000 },
      (err, stdout) => {
        if (err) return reject(err);
        const [status, etag] = stdout.trim().split(' ');
        resolve({ status: Number(status), etag: etag || null });
      },
    );
  });
}

/** An upload's seconds, and the server's peak RSS growth while it ran. */
async function sampled(pid: number, upload: () => Promise<number>): Promise<{ seconds: number; rssGrowth: number }> {
  const { result, rssGrowth } = await withPeakRss(pid, upload);
  return { seconds: result, rssGrowth };
}

function multipartTable(options: MultipartBenchOptions, disk: MultipartStoreResult, rgw: MultipartStoreResult | null, rgwNote: string): string {
  const row = (r: MultipartStoreResult) =>
    `| ${r.store === 'disk' ? 'disk store' : 'Ceph RGW (S3)'} | ${fmt(r.single)} | ${fmt(r.multipart)} | ${r.ratio.median.toFixed(2)}× (${r.ratio.min.toFixed(2)}–${r.ratio.max.toFixed(2)}) | ${fmt(r.singleRssGrowthMiB, 1)} | ${fmt(r.multipartRssGrowthMiB, 1)} | ${fmt(r.completeSeconds, 2)} |`;
  return [
    `Multipart: ${options.sizeMiB} MiB as ${options.partMiB} MiB parts, ${options.inFlight} in flight, vs one PUT (curl; median (range) of ${options.rounds} rounds)`,
    '',
    '| store | single PUT MiB/s | multipart MiB/s | multipart / single | server peak RSS growth, single (MiB) | server peak RSS growth, multipart (MiB) | of which complete, s |',
    '|---|---|---|---|---|---|---|',
    row(disk),
    rgw ? row(rgw) : `| Ceph RGW (S3) | skipped: ${rgwNote} | | | | | |`,
  ].join('\n');
}

export function defaultMultipartOptions(quick: boolean, log: (line: string) => void): MultipartBenchOptions {
  return { sizeMiB: quick ? 20 : 200, partMiB: 8, inFlight: 4, rounds: 3, log };
}

// vite-node hides the script from process.argv, hence the variable.
if (process.env.BENCH_MULTIPART_ALONE === '1') {
  const quick = process.env.BENCH_QUICK === '1';
  const log = (line: string) => process.stderr.write(`  · ${line}\n`);
  const result = await benchMultipart(defaultMultipartOptions(quick, log));
  process.stdout.write(result.table + '\n');
  const dir = path.join(ROOT, 'bench/results');
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-multipart${quick ? '-quick' : ''}.json`);
  await writeFile(file, JSON.stringify(result, null, 2));
  process.stderr.write(`wrote ${path.relative(ROOT, file)}\n`);
}
