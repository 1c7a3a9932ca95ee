/**
 * The capacity model's inputs (docs/deploy.md, "Sizing"): what one request
 * costs a Keyframe process and the engines behind it, measured, not guessed.
 * For each operation it sends a fixed number of requests to one `keyframe
 * serve` on PostgreSQL (with and without Redis), and divides by that number:
 *
 * - the server process's CPU time (user + system, /proc/<pid>/stat), in µs;
 * - PostgreSQL transactions and rows written (pg_stat_database of its database);
 * - Redis commands (INFO commandstats), when Redis is configured.
 *
 * CPU per request is what sizing needs (requests/s a core can serve = 10^6 / µs);
 * the load runs over 10 connections so the process is busy but not queueing.
 *
 * Part of `npm run bench`; alone: `BENCH_CAPACITY_ALONE=1 npx vite-node bench/capacity.ts` after `npm run build`
 * (BENCH_QUICK=1 for a smoke run).
 */
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import autocannon, { type Options as LoadOptions } from 'autocannon';
import pg from 'pg';
import { Redis } from 'ioredis';
import { postgresWithKey } from './lib/keys.js';
import { BENCH_POSTGRES_URL, keyframePostgresEnv } from './lib/postgres.js';
import { sleep, startKeyframe, type ChildServer } from './lib/processes.js';
import { verifiedUpload } from './lib/uploads.js';

export interface OperationCost {
  operation: string;
  redis: boolean;
  requests: number;
  /** Server CPU (user + system) per request, µs. */
  cpuUs: number;
  /** PostgreSQL transactions (commits) per request. */
  dbTransactions: number;
  /** Rows inserted + updated + deleted per request. */
  dbRowsWritten: number;
  /** Redis commands per request, those a script runs included (null without Redis). */
  redisCommands: number | null;
  /** Of those, round trips that ran a script (EVALSHA/EVAL), per request (null without Redis). */
  redisScripts: number | null;
  /** Requests/s over the run (for orientation only: the figure to size with is cpuUs). */
  rps: number;
}

export interface CapacityOptions {
  /** Requests per operation. */
  requests: number;
  redisUrl: string;
  log: (line: string) => void;
}

const CLOCK_TICKS_PER_SECOND = 100; // Linux USER_HZ: /proc/<pid>/stat counts CPU time in these.
/** An idle PostgreSQL backend reports its statistics within 10 s (PGSTAT_IDLE_INTERVAL); wait that out before each reading. */
const STATS_FLUSH_MS = 11_000;

export async function benchCapacity(options: CapacityOptions): Promise<OperationCost[]> {
  const rows: OperationCost[] = [];
  for (const redis of [false, true]) rows.push(...(await measureServer(redis, options)));
  return rows;
}

async function measureServer(withRedis: boolean, options: CapacityOptions): Promise<OperationCost[]> {
  const { dataDir, key, database } = await postgresWithKey(withRedis ? 'capacity_redis' : 'capacity');
  const prefix = `keyframe-bench-capacity-${process.pid}-${withRedis ? 'r' : 'n'}`;
  const redisEnv: Record<string, string> = withRedis ? { KEYFRAME_REDIS_URL: options.redisUrl, KEYFRAME_REDIS_PREFIX: prefix } : {};
  const redis = withRedis ? new Redis(options.redisUrl) : null;
  const stats = new pg.Client({ connectionString: database.url });
  await stats.connect();
  let server: ChildServer | null = null;
  try {
    server = await startKeyframe(`capacity${withRedis ? '+redis' : ''}`, dataDir, { ...keyframePostgresEnv(database.url), ...redisEnv, LOG_LEVEL: 'warn' });
    const auth = { authorization: `Bearer ${key}` };
    const s3Key = await verifiedUpload(server.url, key);
    const generationId = await someGeneration(server.url, key, s3Key);
    const operations: { name: string; request: LoadOptions }[] = [
      {
        name: 'presign',
        request: {
          url: `${server.url}/api/s3/presign-upload`,
          method: 'POST',
          headers: { ...auth, 'content-type': 'application/json' },
          body: JSON.stringify({ kind: 'upload', contentType: 'image/png', fileName: 'reference.png' }),
        },
      },
      { name: 'upload status read', request: { url: `${server.url}/api/uploads/status?key=${encodeURIComponent(s3Key)}`, headers: auth } },
      { name: 'generation status read', request: { url: `${server.url}/api/generations/${generationId}`, headers: auth } },
    ];
    const out: OperationCost[] = [];
    for (const { name, request } of operations) {
      // A short warm-up so the JIT and the key cache are where a long-running server has them.
      await autocannon({ ...request, connections: 10, amount: Math.min(2000, options.requests) });
      await sleep(STATS_FLUSH_MS);
      const before = await snapshot(server.pid, stats, database.name, redis);
      const result = await autocannon({ ...request, connections: 10, amount: options.requests });
      await sleep(STATS_FLUSH_MS);
      const after = await snapshot(server.pid, stats, database.name, redis);
      const n = result.requests.total;
      if (result.non2xx > 0 || result.errors > 0) throw new Error(`${name}: ${result.non2xx} non-2xx answers and ${result.errors} errors of ${n}`);
      out.push({
        operation: name,
        redis: withRedis,
        requests: n,
        cpuUs: ((after.cpuTicks - before.cpuTicks) / CLOCK_TICKS_PER_SECOND / n) * 1e6,
        dbTransactions: (after.commits - before.commits) / n,
        dbRowsWritten: (after.rowsWritten - before.rowsWritten) / n,
        redisCommands: redis ? (after.redisCalls - before.redisCalls) / n : null,
        redisScripts: redis ? (after.redisScripts - before.redisScripts) / n : null,
        rps: n / result.duration,
      });
      options.log(`capacity ${name}${withRedis ? ' +redis' : ''}: ${out.at(-1)!.cpuUs.toFixed(0)} µs CPU per request`);
    }
    return out;
  } finally {
    await server?.stop();
    await stats.end();
    if (redis) {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
    await database.drop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** A generation of the bench user, completed (keyframe-local renders it), for the status reads. */
async function someGeneration(url: string, key: string, startFrameKey: string): Promise<string> {
  const res = await fetch(`${url}/api/generations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'capacity', modelName: 'keyframe-local', duration: '4s', resolution: '720p', startFrameKey }),
  });
  if (res.status !== 200) throw new Error(`create generation answered ${res.status}: ${await res.text()}`);
  const id = ((await res.json()) as { generations: { generation_id: string }[] }).generations[0]!.generation_id;
  for (let i = 0; i < 600; i++) {
    const status = (await (await fetch(`${url}/api/generations/${id}`, { headers: { authorization: `Bearer ${key}` } })).json()) as { status: string };
    if (status.status !== 'generating') return id;
    await sleep(100);
  }
  throw new Error('the generation did not settle within 60 s');
}

interface Snapshot {
  cpuTicks: number;
  commits: number;
  rowsWritten: number;
  redisCalls: number;
  redisScripts: number;
}

async function snapshot(pid: number, stats: pg.Client, databaseName: string, redis: Redis | null): Promise<Snapshot> {
  // Fields 14 and 15 of /proc/<pid>/stat (utime, stime), counted after the parenthesised command name.
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const cpuTicks = Number(fields[11]) + Number(fields[12]);
  const { rows } = await stats.query<{ commits: string; written: string }>(
    'select xact_commit as commits, tup_inserted + tup_updated + tup_deleted as written from pg_stat_database where datname = $1',
    [databaseName],
  );
  let redisCalls = 0;
  let redisScripts = 0;
  if (redis) {
    const info = await redis.info('commandstats');
    for (const match of info.matchAll(/^cmdstat_([a-z|_-]+):calls=(\d+)/gm)) {
      // The bench's own INFO calls are not the server's work.
      if (match[1] !== 'info') redisCalls += Number(match[2]);
      if (match[1] === 'evalsha' || match[1] === 'eval') redisScripts += Number(match[2]);
    }
  }
  return { cpuTicks, commits: Number(rows[0]!.commits), rowsWritten: Number(rows[0]!.written), redisCalls, redisScripts };
}

/** The figures as a markdown table. */
export function capacityTable(rows: OperationCost[]): string[] {
  return [
    '| operation | Redis | CPU µs / request | PG transactions / request | PG rows written / request | Redis commands / request (scripts\' included) | of which script runs | req/s (orientation) |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.operation} | ${r.redis ? 'yes' : 'no'} | ${r.cpuUs.toFixed(0)} | ${r.dbTransactions.toFixed(2)} | ${r.dbRowsWritten.toFixed(2)} | ${r.redisCommands === null ? '—' : r.redisCommands.toFixed(2)} | ${r.redisScripts === null ? '—' : r.redisScripts.toFixed(2)} | ${r.rps.toFixed(0)} |`,
    ),
  ];
}

if (process.env.BENCH_CAPACITY_ALONE === '1') {
  const quick = process.env.BENCH_QUICK === '1';
  const rows = await benchCapacity({
    requests: quick ? 2000 : 20000,
    redisUrl: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
    log: (line) => process.stderr.write(`  · ${line}\n`),
  });
  console.log(`PostgreSQL at ${new URL(BENCH_POSTGRES_URL).host}; one keyframe serve; ${rows[0]?.requests} requests per row over 10 connections\n`);
  console.log(capacityTable(rows).join('\n'));
}
