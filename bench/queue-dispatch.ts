/**
 * Generation dispatch: how many queued generations a consumer starts per second, and how
 * soon after its enqueue each one starts, through BullMQ (Redis) and through the database
 * queue, with a no-op handler (its run marks the row completed). Each "enqueue" is what the
 * API does: INSERT the row, then `enqueue(id)`; 20 users take turns. Producer and consumer
 * are separate queue objects on connections of their own (the api and worker roles), except
 * the database queue on SQLite, which is the embedded install (one object, one process).
 * Burst: N jobs submitted 16 at a time; paced: a steady rate below capacity (latency at rest).
 * Rounds are interleaved across the setups; ratios are per round, side by side.
 *
 * Part of `npm run bench`; alone: `BENCH_DISPATCH_ALONE=1 npx vite-node bench/queue-dispatch.ts` (BENCH_QUICK=1 for a
 * smoke run), which writes bench/results/<timestamp>-queue-dispatch.json.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { openDatabase, type Db } from '../src/db/database.js';
import { BullmqQueue } from '../src/queue/bullmq-queue.js';
import { InProcessQueue } from '../src/queue/in-process-queue.js';
import type { JobConsumer, JobHandler, JobProducer } from '../src/queue/job-queue.js';
import { openRedis, type RedisHandle } from '../src/redis/connection.js';
import { redisAnswers } from '../test/helpers/redis.js';
import { queuedJob } from '../test/queue/support/jobs.js';
import { BENCH_POOL_SIZE, BENCH_POSTGRES_URL, createScratchDatabase, postgresUnreachable, type ScratchDatabase } from './lib/postgres.js';
import { ROOT, sleep } from './lib/processes.js';
import { fmt, summarise, type Summary } from './lib/stats.js';

export const BENCH_REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface DispatchOptions {
  /** Jobs of one burst round. */
  jobs: number;
  /** Jobs of one paced round, submitted at `pacedRate` per second. */
  pacedJobs: number;
  pacedRate: number;
  rounds: number;
  /** The consumer's concurrency (jobs at once), the same for every setup. */
  concurrency: number;
  /** Admin URL the scratch databases are made with; null: the PostgreSQL setups are skipped. */
  postgresAdminUrl: string | null;
  /** Null: the BullMQ setup is skipped. */
  redisUrl: string | null;
  log: (line: string) => void;
}

export interface DispatchRow {
  setup: string;
  mode: 'burst' | 'paced';
  jobs: number;
  /** Jobs per second, first submission to last completion. */
  jobsPerSec: Summary;
  /** Enqueue (before the INSERT) to the handler's start, ms. */
  p50Ms: Summary;
  p99Ms: Summary;
  /**
   * This process's CPU (user + system) per job, µs: producer and consumer together (the INSERT,
   * the enqueue, the claim, the no-op run and the settle), database and Redis servers not included.
   */
  cpuUsPerJob: Summary;
}

export interface DispatchResult {
  concurrency: number;
  rows: DispatchRow[];
  /** BullMQ ÷ the database queue, both on PostgreSQL, per round. */
  ratios: { burstJobsPerSec: Summary; burstP50: Summary; pacedP50: Summary; pacedP99: Summary } | null;
  skipped: string[];
  table: string;
}

const USERS = 20;
const IN_FLIGHT = 16;

/** One setup: where rows are inserted, what enqueues them, and the started consumer's settings. */
interface Rig {
  name: string;
  producerDb: Db;
  producer: JobProducer;
  /** Told of each start (ms, performance.now) and of each job the queue abandoned. */
  events: { started(id: string, at: number): void; failed(id: string): void };
  close(): Promise<void>;
}

export async function benchQueueDispatch(options: DispatchOptions): Promise<DispatchResult> {
  const rigs: Rig[] = [];
  const skipped: string[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  try {
    rigs.push(await sqliteRig(options, cleanups));
    if (options.postgresAdminUrl) {
      rigs.push(await postgresDatabaseRig(options, options.postgresAdminUrl, cleanups));
      if (options.redisUrl) rigs.push(await bullmqRig(options, options.postgresAdminUrl, options.redisUrl, cleanups));
      else skipped.push('BullMQ: Redis not reachable');
    } else {
      skipped.push('PostgreSQL not reachable: both PostgreSQL setups skipped');
    }
    for (const rig of rigs) await dispatch(rig, 'warm', 50, null);

    const figures = new Map<string, { tps: number[]; p50: number[]; p99: number[]; cpu: number[] }>();
    const add = (key: string, r: { tps: number; p50: number; p99: number; cpuUs: number }) => {
      const f = figures.get(key) ?? { tps: [], p50: [], p99: [], cpu: [] };
      f.tps.push(r.tps);
      f.p50.push(r.p50);
      f.p99.push(r.p99);
      f.cpu.push(r.cpuUs);
      figures.set(key, f);
    };
    for (let round = 1; round <= options.rounds; round++) {
      for (const rig of rigs) {
        const burst = await dispatch(rig, `r${round}-burst`, options.jobs, null);
        add(`${rig.name}|burst`, burst);
        const paced = await dispatch(rig, `r${round}-paced`, options.pacedJobs, 1000 / options.pacedRate);
        add(`${rig.name}|paced`, paced);
        options.log(
          `queue dispatch round ${round}, ${rig.name}: burst ${burst.tps.toFixed(0)} jobs/s (p50 ${burst.p50.toFixed(1)} ms), ` +
            `paced p50 ${paced.p50.toFixed(2)} ms p99 ${paced.p99.toFixed(2)} ms`,
        );
      }
    }

    const rows: DispatchRow[] = [];
    for (const [key, f] of figures) {
      const [setup, mode] = key.split('|') as [string, 'burst' | 'paced'];
      rows.push({ setup, mode, jobs: mode === 'burst' ? options.jobs : options.pacedJobs, jobsPerSec: summarise(f.tps), p50Ms: summarise(f.p50), p99Ms: summarise(f.p99), cpuUsPerJob: summarise(f.cpu) });
    }
    const bull = (m: string) => figures.get(`${BULLMQ}|${m}`);
    const base = (m: string) => figures.get(`${DATABASE_PG}|${m}`);
    const per = (a: number[], b: number[]) => summarise(a.map((v, i) => v / b[i]!));
    const ratios =
      bull('burst') && base('burst') && bull('paced') && base('paced')
        ? {
            burstJobsPerSec: per(bull('burst')!.tps, base('burst')!.tps),
            burstP50: per(bull('burst')!.p50, base('burst')!.p50),
            pacedP50: per(bull('paced')!.p50, base('paced')!.p50),
            pacedP99: per(bull('paced')!.p99, base('paced')!.p99),
          }
        : null;
    const result = { concurrency: options.concurrency, rows, ratios, skipped, table: '' };
    result.table = dispatchTable(result, options);
    return result;
  } finally {
    for (const rig of rigs) await rig.close().catch((err: Error) => options.log(`closing ${rig.name}: ${err.message}`));
    for (const cleanup of cleanups.reverse()) await cleanup().catch((err: Error) => options.log(`bench clean-up: ${err.message}`));
  }
}

const DATABASE_SQLITE = 'database queue, SQLite (embedded)';
const DATABASE_PG = 'database queue, PostgreSQL';
const BULLMQ = 'BullMQ, PostgreSQL rows';

/** Submits `n` jobs (INSERT + enqueue) in a burst (`paceMs` null) or one every `paceMs`; resolves once all ran. */
async function dispatch(rig: Rig, tag: string, n: number, paceMs: number | null): Promise<{ tps: number; p50: number; p99: number; cpuUs: number }> {
  const ids = Array.from({ length: n }, (_, i) => `${tag}-${String(i).padStart(5, '0')}`);
  const enqueuedAt = new Map<string, number>();
  const latencies: number[] = [];
  let finish!: () => void;
  let fail!: (err: Error) => void;
  const finished = new Promise<void>((resolve, reject) => ((finish = resolve), (fail = reject)));
  let lastDone = 0;
  rig.events.started = (id, at) => {
    const from = enqueuedAt.get(id);
    if (from === undefined) return;
    latencies.push(at - from);
    lastDone = performance.now();
    if (latencies.length === n) finish();
  };
  rig.events.failed = (id) => fail(new Error(`${rig.name}: job ${id} was abandoned`));
  const submit = async (i: number) => {
    const id = ids[i]!;
    enqueuedAt.set(id, performance.now());
    await rig.producerDb.insertInto('generations').values(queuedJob(id, `user-${i % USERS}`, new Date())).execute();
    await rig.producer.enqueue(id);
  };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  if (paceMs === null) {
    let next = 0;
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      while (next < n) await submit(next++);
    }));
  } else {
    const submitted: Promise<void>[] = [];
    for (let i = 0; i < n; i++) {
      const wait = t0 + i * paceMs - performance.now();
      if (wait > 0) await sleep(wait);
      submitted.push(submit(i));
    }
    await Promise.all(submitted);
  }
  const timeout = setTimeout(() => fail(new Error(`${rig.name}: ${latencies.length} of ${n} jobs started within 120 s`)), 120_000);
  try {
    await finished;
  } finally {
    clearTimeout(timeout);
  }
  const cpu = process.cpuUsage(cpu0);
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  return { tps: n / ((lastDone - t0) / 1000), p50: at(0.5), p99: at(0.99), cpuUs: (cpu.user + cpu.system) / n };
}

/** The no-op handler: marks the row completed, then reports the start it measured. */
function handlerFor(db: Db, rig: () => Rig): JobHandler {
  return {
    async run(id) {
      const at = performance.now();
      await db.updateTable('generations').set({ status: 'completed', completed_at: new Date().toISOString() }).where('id', '=', id).execute();
      rig().events.started(id, at);
    },
    async abandon(id, reason) {
      await db.updateTable('generations').set({ status: 'failed', error: reason }).where('id', '=', id).execute();
      rig().events.failed(id);
    },
  };
}

const noEvents = () => ({ started: () => {}, failed: () => {} });
const onError = (label: string) => (err: unknown, id: string) => process.stderr.write(`  ! ${label} (${id}): ${String(err)}\n`);

async function addUsers(db: Db): Promise<void> {
  const now = new Date().toISOString();
  await db.insertInto('users').values(Array.from({ length: USERS }, (_, i) => ({ id: `user-${i}`, webhook_secret: 'whsec_bench', created_at: now }))).execute();
}

async function sqliteRig(options: DispatchOptions, cleanups: (() => Promise<void>)[]): Promise<Rig> {
  const dir = await mkdtemp(path.join(tmpdir(), 'keyframe-bench-dispatch-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const db = await openDatabase(dir);
  await addUsers(db);
  const queue = new InProcessQueue(db, { concurrency: options.concurrency, maxAttempts: 3, onError: onError(DATABASE_SQLITE) });
  const rig: Rig = {
    name: DATABASE_SQLITE,
    producerDb: db,
    producer: queue,
    events: noEvents(),
    close: async () => {
      await queue.stop();
      await db.destroy();
    },
  };
  await queue.start(handlerFor(db, () => rig));
  return rig;
}

async function postgresPools(label: string, adminUrl: string, cleanups: (() => Promise<void>)[]): Promise<{ producerDb: Db; consumerDb: Db }> {
  const scratch: ScratchDatabase = await createScratchDatabase(label, adminUrl);
  cleanups.push(() => scratch.drop());
  const producerDb = await openDatabase({ dialect: 'postgres', url: scratch.url, poolSize: BENCH_POOL_SIZE });
  const consumerDb = await openDatabase({ dialect: 'postgres', url: scratch.url, poolSize: BENCH_POOL_SIZE }, { migrate: false });
  cleanups.push(async () => {
    await producerDb.destroy();
    await consumerDb.destroy();
  });
  await addUsers(producerDb);
  return { producerDb, consumerDb };
}

async function postgresDatabaseRig(options: DispatchOptions, adminUrl: string, cleanups: (() => Promise<void>)[]): Promise<Rig> {
  const { producerDb, consumerDb } = await postgresPools('dispatch_db', adminUrl, cleanups);
  const queueOptions = { concurrency: options.concurrency, maxAttempts: 3, onError: onError(DATABASE_PG) };
  const producer = new InProcessQueue(producerDb, queueOptions);
  const consumer: JobConsumer = new InProcessQueue(consumerDb, queueOptions);
  const rig: Rig = { name: DATABASE_PG, producerDb, producer, events: noEvents(), close: () => consumer.stop() };
  await consumer.start(handlerFor(consumerDb, () => rig));
  return rig;
}

async function bullmqRig(options: DispatchOptions, adminUrl: string, redisUrl: string, cleanups: (() => Promise<void>)[]): Promise<Rig> {
  const { producerDb, consumerDb } = await postgresPools('dispatch_bullmq', adminUrl, cleanups);
  const config = { url: redisUrl, prefix: `kf-bench-${process.pid}-${randomBytes(4).toString('hex')}` };
  const handles: RedisHandle[] = [];
  for (let i = 0; i < 2; i++) handles.push(await openRedis(config, { onError: (err) => onError(BULLMQ)(err, '(redis)') }));
  cleanups.push(async () => {
    const client = handles[0]!.client;
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${config.prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await client.del(...keys);
    } while (cursor !== '0');
    for (const h of handles) await h.close();
  });
  const queueOptions = { concurrency: options.concurrency, maxAttempts: 3, leaseMs: 30_000, onError: onError(BULLMQ) };
  const producer = new BullmqQueue(producerDb, { ...queueOptions, redis: handles[0]! });
  const consumer = new BullmqQueue(consumerDb, { ...queueOptions, redis: handles[1]! });
  const rig: Rig = {
    name: BULLMQ,
    producerDb,
    producer,
    events: noEvents(),
    close: async () => {
      await consumer.stop();
      await Promise.all([producer.close(), consumer.close()]);
    },
  };
  await consumer.start(handlerFor(consumerDb, () => rig));
  return rig;
}

/** The markdown table of a result (also printed by `npm run bench`). */
export function dispatchTable(result: Omit<DispatchResult, 'table'>, options: Pick<DispatchOptions, 'pacedRate' | 'rounds'>): string {
  const out = [
    `| Generation dispatch (no-op handler, concurrency ${result.concurrency}) | Mode | Jobs | jobs/s | enqueue → start p50 ms | p99 ms | CPU µs / job (this process) |`,
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of result.rows) {
    const mode = r.mode === 'burst' ? `burst (${IN_FLIGHT} in flight)` : `paced (${options.pacedRate}/s)`;
    out.push(`| ${r.setup} | ${mode} | ${r.jobs} | ${fmt(r.jobsPerSec)} | ${fmt(r.p50Ms, 2)} | ${fmt(r.p99Ms, 2)} | ${fmt(r.cpuUsPerJob)} |`);
  }
  out.push('');
  if (result.ratios) {
    const x = (s: Summary) => `${fmt(s, 2)}×`;
    out.push(
      `BullMQ ÷ database queue (both PostgreSQL), per round (median of ${options.rounds}, range): ` +
        `burst jobs/s ${x(result.ratios.burstJobsPerSec)}, burst p50 ${x(result.ratios.burstP50)}, ` +
        `paced p50 ${x(result.ratios.pacedP50)}, paced p99 ${x(result.ratios.pacedP99)}.`,
    );
  }
  for (const s of result.skipped) out.push(`Skipped: ${s}.`);
  return out.join('\n');
}

/** Options for `npm run bench` and the standalone run: 2000-job bursts, 500 jobs paced at 100/s, 3 rounds (quick: 200, 100, 1). */
export async function defaultDispatchOptions(quick: boolean, postgresAdminUrl: string | null, log: (line: string) => void): Promise<DispatchOptions> {
  const redisUrl = (await redisAnswers(BENCH_REDIS_URL, 2000)) ? BENCH_REDIS_URL : null;
  if (!redisUrl) log(`Redis not reachable at ${BENCH_REDIS_URL}: the BullMQ dispatch rows are skipped (set BENCH_REDIS_URL)`);
  return { jobs: quick ? 200 : 2000, pacedJobs: quick ? 100 : 500, pacedRate: 100, rounds: quick ? 1 : 3, concurrency: 4, postgresAdminUrl, redisUrl, log };
}

// vite-node hides the script from process.argv, hence the variable.
if (process.env.BENCH_DISPATCH_ALONE === '1') {
  const quick = process.env.BENCH_QUICK === '1';
  const log = (line: string) => process.stderr.write(`  · ${line}\n`);
  const pgDown = await postgresUnreachable(BENCH_POSTGRES_URL);
  if (pgDown) log(`PostgreSQL not reachable (${pgDown}): only the SQLite row runs`);
  const result = await benchQueueDispatch(await defaultDispatchOptions(quick, pgDown === null ? BENCH_POSTGRES_URL : null, log));
  process.stdout.write(result.table + '\n');
  const dir = path.join(ROOT, 'bench/results');
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-queue-dispatch${quick ? '-quick' : ''}.json`);
  await writeFile(file, JSON.stringify(result, null, 2));
  process.stderr.write(`wrote ${path.relative(ROOT, file)}\n`);
}
