/**
 * `npm run bench`: every figure is measured next to its peer in the same run,
 * as the median of several rounds with their range; prints markdown tables
 * and writes the raw figures to bench/results/<timestamp>.json.
 * BENCH_QUICK=1 runs one short round of each (a smoke run, not for publishing).
 */
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { benchAuthTiming } from './auth-timing.js';
import { benchCapacity, capacityTable } from './capacity.js';
import { benchClusterPresign } from './cluster-presign.js';
import { benchIngest } from './ingest.js';
import { benchMultipart, defaultMultipartOptions } from './multipart.js';
import { BENCH_POSTGRES_URL, describe, postgresUnreachable } from './lib/postgres.js';
import { ROOT } from './lib/processes.js';
import { fmt, type Summary } from './lib/stats.js';
import { benchPresign } from './presign.js';
import { benchQueueDispatch, defaultDispatchOptions } from './queue-dispatch.js';
import { benchScale } from './scale.js';
import { benchVerification } from './verification.js';
import { redisAnswers } from '../test/helpers/redis.js';

const quick = process.env.BENCH_QUICK === '1';
const log = (line: string) => process.stderr.write(`  · ${line}\n`);
const started = Date.now();

const machine = {
  nproc: os.availableParallelism(),
  cpu: os.cpus()[0]?.model ?? 'unknown',
  memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
  node: process.version,
  kernel: os.release(),
  curl: execFileSync('curl', ['--version']).toString().split('\n', 1)[0],
};
process.stderr.write(`bench on ${machine.nproc} × ${machine.cpu}, node ${machine.node}${quick ? ' (QUICK smoke run)' : ''}\n`);

const s3Endpoint = process.env.S3_ENDPOINT ?? 'http://127.0.0.1:7480';
const rgwUp = await fetch(s3Endpoint, { signal: AbortSignal.timeout(2000) }).then(
  () => true,
  () => false,
);
// Keyframe in S3 mode against Ceph RGW (the credentials scripts/ceph-rgw.sh prints by default).
const s3Env = rgwUp
  ? {
      KEYFRAME_STORAGE: 's3',
      S3_ENDPOINT: s3Endpoint,
      S3_BUCKET: process.env.S3_BUCKET ?? 'keyframe-bench',
      S3_ACCESS_KEY_ID: process.env.S3_ACCESS_KEY_ID ?? 'keyframeaccesskey',
      S3_SECRET_ACCESS_KEY: process.env.S3_SECRET_ACCESS_KEY ?? 'keyframesecretkey0123456789',
      S3_CREATE_BUCKET: 'true',
    }
  : null;
if (!rgwUp) log(`Ceph RGW not reachable at ${s3Endpoint}: S3-mode rows skipped (start it with scripts/ceph-rgw.sh)`);
const pgDown = await postgresUnreachable(BENCH_POSTGRES_URL);
const postgresAdminUrl = pgDown === null ? BENCH_POSTGRES_URL : null;
const pgSkipNote = `PostgreSQL not reachable at ${describe(BENCH_POSTGRES_URL)} (${pgDown})`;
if (pgDown !== null) {
  process.stderr.write(
    `\n  !!! ${pgSkipNote}: EVERY PostgreSQL row (presign, status, scale) is SKIPPED.\n` +
      '  !!! Start PostgreSQL 15+ on 127.0.0.1:5432 (trust auth) or set BENCH_POSTGRES_URL to a role that may CREATE DATABASE.\n\n',
  );
}
const presign = await benchPresign({
  connections: [10, 50, 100],
  rounds: quick ? 1 : 3,
  seconds: quick ? 1 : 3,
  s3Env,
  postgresAdminUrl,
  statusConnections: 50,
  log,
});
const ingest = await benchIngest({ sizeMiB: quick ? 20 : 200, rounds: quick ? 1 : 3, s3Endpoint, log });
// Multipart (issue 13) vs the single PUT, on disk and RGW: a table of its own (bench/multipart.ts).
const multipart = await benchMultipart({ ...defaultMultipartOptions(quick, log), rounds: quick ? 1 : 3 });
const levels = (process.env.BENCH_SCALE_LEVELS ?? (quick ? '10000' : '10000,100000,1000000')).split(',').map(Number);
const scale = await benchScale({ levels, rounds: quick ? 1 : 3, seconds: quick ? 1 : 2, connections: 50, dialect: 'sqlite', log });
const scalePg = postgresAdminUrl
  ? await benchScale({ levels, rounds: quick ? 1 : 3, seconds: quick ? 1 : 2, connections: 50, dialect: 'postgres', postgresAdminUrl, log })
  : null;
// Needs PostgreSQL (and Redis); S3: the RGW above when it answers, else the cluster starts its own.
const clusterPresign = postgresAdminUrl
  ? await benchClusterPresign({ connections: 50, rounds: quick ? 1 : 3, seconds: quick ? 1 : 3, s3Env, log })
  : null;
const timing = await benchAuthTiming(quick ? 2000 : 20000);
const verification = await benchVerification(quick ? 10 : 100, quick ? 3 : 10);
const dispatch = await benchQueueDispatch(await defaultDispatchOptions(quick, postgresAdminUrl, log));
// The capacity model's inputs (docs/deploy.md, Sizing): CPU, database and Redis work per request.
const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const capacity =
  postgresAdminUrl && (await redisAnswers(redisUrl, 2000)) ? await benchCapacity({ requests: quick ? 2000 : 20000, redisUrl, log }) : null;

const ratio = (s: Summary) => `${fmt(s, 2)}×`;
const out: string[] = [];
const c50 = presign.rows.find((r) => r.connections === 50)!;
out.push(
  `**Presign: ${c50.keyframe.rps.median.toFixed(0)} requests/s** (50 connections, disk store, upload recorded); ` +
    `**upload ingest: ${ingest.keyframe.median.toFixed(0)} MiB/s** (${ingest.sizeMiB} MiB PUT through upload_url with curl).`,
  '',
  `Machine: ${machine.nproc} × ${machine.cpu}, ${machine.memoryGiB} GiB, node ${machine.node}, Linux ${machine.kernel}. ` +
    `Figures: median of ${quick ? 1 : 3} rounds, (min–max) of the rounds; ratios are computed per round, side by side.`,
  '',
  '| Workload | Figure | Keyframe | Peer | Peer figure | Keyframe / peer | Target |',
  '|---|---|---|---|---|---|---|',
);
for (const r of presign.rows) {
  out.push(
    `| presign, ${r.connections} conn | req/s | ${fmt(r.keyframe.rps)} | bare Fastify route, fixed JSON (framework ceiling) | ${fmt(r.bare.rps)} | ${ratio(r.vsBare)} | ≥ 0.6× |`,
    `| presign, ${r.connections} conn | req/s | ${fmt(r.keyframe.rps)} | AWS SDK getSignedUrl + sync SQLite insert | ${fmt(r.sdk.rps)} | ${ratio(r.vsSdk)} | ≥ 5× |`,
  );
  if (r.keyframeS3 && r.s3VsBare && r.s3VsSdk) {
    out.push(
      `| presign (S3 mode, RGW), ${r.connections} conn | req/s | ${fmt(r.keyframeS3.rps)} | bare Fastify route (framework ceiling) | ${fmt(r.bare.rps)} | ${ratio(r.s3VsBare)} | ≥ 0.6× |`,
      `| presign (S3 mode, RGW), ${r.connections} conn | req/s | ${fmt(r.keyframeS3.rps)} | AWS SDK getSignedUrl + sync SQLite insert | ${fmt(r.sdk.rps)} | ${ratio(r.s3VsSdk)} | ≥ 5× |`,
    );
  } else {
    out.push(`| presign (S3 mode), ${r.connections} conn | req/s | skipped: Ceph RGW not reachable at ${s3Endpoint} | — | — | — | ≥ 0.6× |`);
  }
  if (r.postgres) {
    out.push(
      `| presign (PostgreSQL), ${r.connections} conn | req/s | ${fmt(r.postgres.keyframe.rps)} | AWS SDK getSignedUrl + one pg INSERT per request (pool) | ${fmt(r.postgres.sdk.rps)} | ${ratio(r.postgres.vsSdk)} | ≥ 5× |`,
      `| presign (PostgreSQL), ${r.connections} conn | req/s | ${fmt(r.postgres.keyframe.rps)} | Keyframe on SQLite, same rounds | ${fmt(r.keyframe.rps)} | ${ratio(r.postgres.vsSqlite)} | ≥ 0.7× |`,
    );
  } else {
    out.push(`| presign (PostgreSQL), ${r.connections} conn | req/s | skipped: ${pgSkipNote} | — | — | — | ≥ 5× / ≥ 0.7× |`);
  }
}
if (presign.status) {
  const st = presign.status;
  out.push(
    `| upload status (verified, PostgreSQL), ${st.connections} conn | req/s | ${fmt(st.postgres.rps)} | Keyframe on SQLite, same rounds | ${fmt(st.sqlite.rps)} | ${ratio(st.ratio)} | — |`,
  );
} else {
  out.push(`| upload status (verified, PostgreSQL) | req/s | skipped: ${pgSkipNote} | — | — | — | — |`);
}
out.push(
  `| upload ${ingest.sizeMiB} MiB (disk store) | MiB/s | ${fmt(ingest.keyframe)} | bare node:http → file + SHA-256 (runtime ceiling) | ${fmt(ingest.runtime)} | ${ratio(ingest.vsRuntime)} | ≥ 0.9× |`,
  `| upload ${ingest.sizeMiB} MiB (disk store) | MiB/s | ${fmt(ingest.keyframe)} | dd bs=1M conv=fsync (disk ceiling) | ${fmt(ingest.disk)} | ${ratio(ingest.vsDisk)} | — |`,
  ingest.rgw && ingest.vsRgw
    ? `| upload ${ingest.sizeMiB} MiB (disk store) | MiB/s | ${fmt(ingest.keyframe)} | Ceph RGW presigned PUT | ${fmt(ingest.rgw)} | ${ratio(ingest.vsRgw)} | ≥ 2× |`
    : `| upload ${ingest.sizeMiB} MiB (disk store) | MiB/s | ${fmt(ingest.keyframe)} | Ceph RGW presigned PUT | skipped: ${ingest.rgwNote} | — | ≥ 2× |`,
  `| upload ${ingest.sizeMiB} MiB (disk store) | peak RSS growth, MiB | ${fmt(ingest.keyframeRssGrowthMiB, 1)} | bare node:http handler | ${fmt(ingest.runtimeRssGrowthMiB, 1)} | — | < 64 MiB |`,
);
for (const [label, result] of [['', scale], [' (PostgreSQL)', scalePg]] as const) {
  if (!result) {
    out.push(`| scale rows (PostgreSQL) | req/s | skipped: ${pgSkipNote} | — | — | — | flat (≈ 1×) |`);
    continue;
  }
  for (const s of result.rows) {
    out.push(
      `| presign${label} with 10^${Math.log10(s.uploads).toFixed(0)} uploads + keys recorded | req/s | ${fmt(s.presignRps)} | same server, near-empty db | ${fmt(s.baselinePresignRps)} | ${ratio(s.presignRatio)} | flat (≈ 1×) |`,
      `| auth lookup${label} (unknown key → 401) with 10^${Math.log10(s.apiKeys).toFixed(0)} keys | req/s | ${fmt(s.authMissRps)} | same server, near-empty db | ${fmt(s.baselineAuthMissRps)} | ${ratio(s.authRatio)} | flat (≈ 1×) |`,
      `| upload status${label} (verified) with 10^${Math.log10(s.uploads).toFixed(0)} uploads recorded | req/s | ${fmt(s.statusRps)} | same server, near-empty db | ${fmt(s.baselineStatusRps)} | ${ratio(s.statusRatio)} | flat (≈ 1×) |`,
    );
  }
}
out.push(
  '',
  '| Verification and generation | Keyframe | Reference in the same run | Note |',
  '|---|---|---|---|',
  `| verify one reference, first time (in-process) | ${fmt(verification.firstMs, 2)} ms | — | ${verification.references} PNGs of ${(verification.objectBytes / 2 ** 20).toFixed(1)} MiB; ${verification.storeCallsFirst} store calls each |`,
  `| verify one reference, cached (in-process) | ${fmt(verification.cachedMs, 2)} ms | — | ${verification.storeCallsCached} store calls each |`,
  `| bytes read from the store per verification | ${verification.maxBytesRead} (max) | object ${verification.objectBytes} bytes | limit ${verification.sniffBytes} (64 KiB) |`,
  verification.generationMs && verification.presignMs
    ? `| Create Generation, 10 fresh references (HTTP) | ${fmt(verification.generationMs, 1)} ms | presign on the same server: ${fmt(verification.presignMs, 1)} ms | ${verification.generationNote} |`
    : `| Create Generation, 10 references | skipped | — | ${verification.generationNote} |`,
);
out.push('', dispatch.table);
out.push('', ...(capacity ? capacityTable(capacity) : [`Capacity per request: skipped (needs PostgreSQL and Redis at ${redisUrl}).`]));
out.push('', clusterPresign ? clusterPresign.table : `Presign through nginx (cluster): skipped: ${postgresAdminUrl ? 'the cluster did not start (its error above)' : pgSkipNote}.`);
out.push('', '| Presign latency | Keyframe p50 / p99 ms | bare Fastify p50 / p99 ms | SDK+insert p50 / p99 ms | errors (K / bare / SDK) |', '|---|---|---|---|---|');
for (const r of presign.rows) {
  const lat = (s: { p50: Summary; p99: Summary }) => `${s.p50.median} / ${s.p99.median}`;
  out.push(`| ${r.connections} connections | ${lat(r.keyframe)} | ${lat(r.bare)} | ${lat(r.sdk)} | ${r.keyframe.errors} / ${r.bare.errors} / ${r.sdk.errors} |`);
  if (r.keyframeS3) out.push(`| ${r.connections} connections, Keyframe S3 mode | ${lat(r.keyframeS3)} | | | ${r.keyframeS3.errors} |`);
  if (r.postgres) {
    out.push(
      `| ${r.connections} connections, PostgreSQL (Keyframe / — / SDK + pg INSERT) | ${lat(r.postgres.keyframe)} | | ${lat(r.postgres.sdk)} | ${r.postgres.keyframe.errors} / — / ${r.postgres.sdk.errors} |`,
    );
  }
}
out.push('', '| Key check timing (in-process `ApiKeys.authenticate`, interleaved) | median µs | p90 µs |', '|---|---|---|');
for (const [name, t] of Object.entries(timing.classes)) out.push(`| ${name} | ${t.medianUs.toFixed(1)} | ${t.p90Us.toFixed(1)} |`);
out.push(
  '',
  `Shared-prefix minus random (right length): ${timing.sharedPrefixMinusRandomUs.toFixed(2)} µs; ` +
    `wrong length minus right length: ${timing.wrongLengthMinusRightLengthUs.toFixed(2)} µs (${timing.iterations} calls per class).`,
  `Query plans (SQLite, EXPLAIN QUERY PLAN): ${Object.entries(scale.queryPlans).map(([k, v]) => `${k}: \`${v}\``).join('; ')}.`,
  scalePg
    ? `Query plans (PostgreSQL, EXPLAIN, 10^${Math.log10(levels.at(-1)!).toFixed(0)} rows): ${Object.entries(scalePg.queryPlans).map(([k, v]) => `${k}: \`${v}\``).join('; ')}.`
    : `Query plans (PostgreSQL): skipped: ${pgSkipNote}.`,
  `Whole run: ${((Date.now() - started) / 1000).toFixed(0)} s.`,
);
out.push('', multipart.table);
const table = out.join('\n');
process.stdout.write(table + '\n');

const resultsDir = path.join(ROOT, 'bench/results');
await mkdir(resultsDir, { recursive: true });
const file = path.join(resultsDir, `${new Date().toISOString().replace(/[:.]/g, '-')}${quick ? '-quick' : ''}.json`);
await writeFile(file, JSON.stringify({ machine, quick, presign, ingest, multipart, scale, scalePg, timing, verification, dispatch, clusterPresign, capacity, table }, null, 2));
process.stderr.write(`wrote ${path.relative(ROOT, file)}\n`);
