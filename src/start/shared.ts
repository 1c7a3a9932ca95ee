import fs from 'node:fs';
import { sql } from 'kysely';
import { pino } from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import { databaseTargetOf, openDatabase, type Db } from '../db/database.js';
import { queueDepth } from '../domain/generations/queue-depth.js';
import { loggerOptions } from '../http/logging.js';
import { startMetricsListener, type MetricsListener } from '../metrics/metrics-listener.js';
import { PrometheusMetrics } from '../metrics/prometheus.js';
import { BullmqQueue } from '../queue/bullmq-queue.js';
import { InProcessQueue } from '../queue/in-process-queue.js';
import { openRedis, type RedisHandle } from '../redis/connection.js';
import type { JobConsumer, JobProducer, JobQueue } from '../queue/job-queue.js';
import type { ObjectStore } from '../storage/object-store.js';
import { openStore } from '../storage/open-store.js';
import { S3Store } from '../storage/s3/s3-store.js';

/**
 * Wiring every role needs (src/start/api.ts, worker.ts, embedded.ts are the
 * composition roots; each builds its process from these pieces and nothing
 * else opens a pool, a store or a logger).
 */

/**
 * The process's one logger, created by whoever starts the process and handed down: to Fastify
 * (`loggerInstance`), the generation worker, the queue and the shutdown. Same options as the
 * server's request logs always had (src/http/logging.ts: path only, no credential), plus the
 * serializers Fastify adds to a logger it makes itself.
 */
export function createLogger(config: Pick<Config, 'logLevel'>): FastifyBaseLogger {
  const options = loggerOptions(config.logLevel) as { level: string; redact: unknown; serializers: Record<string, (v: any) => unknown> };
  return pino({
    level: options.level,
    redact: options.redact as pino.LoggerOptions['redact'],
    serializers: {
      err: pino.stdSerializers.err,
      res: (reply: { statusCode?: number }) => ({ statusCode: reply.statusCode }),
      ...options.serializers,
    },
  });
}

/** The database, store and (in a cluster) Redis a role runs on, and how to close them. */
export interface Foundation {
  db: Db;
  store: ObjectStore;
  /** The process's Redis client when `KEYFRAME_REDIS_URL` is set, else null. */
  redis: RedisHandle | null;
  /** Closes the store's clients, Redis and the database pool (in that order); safe to call twice. */
  close(): Promise<void>;
}

/**
 * Opens the database (migrating it) and makes the data dir. The store is opened next by
 * `openFoundation` (the disk store needs the public URL, which the API knows only once its port is
 * chosen); each root closes the database when what follows fails, so a failed start never leaves
 * a pool keeping the process alive.
 */
export async function openDatabaseFor(config: Config): Promise<Db> {
  const db = await openDatabase(databaseTargetOf(config));
  // With PostgreSQL no SQLite file is made; the data dir still holds the disk store, the signing secret
  // and scratch files, so it is the owner's alone either way (SQLite's open does the same).
  try {
    fs.mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    fs.chmodSync(config.dataDir, 0o700);
  } catch (err) {
    await db.destroy();
    throw err;
  }
  return db;
}

export async function openFoundation(config: Config, db: Db, publicUrl: string, log: FastifyBaseLogger): Promise<Foundation> {
  const store = await openStore(config, publicUrl);
  let redis: RedisHandle | null = null;
  try {
    if (config.redis) redis = await openRedis(config.redis, { onError: (err) => log.warn({ err }, 'redis connection error') });
  } catch (err) {
    if (store instanceof S3Store) store.client.destroy();
    throw err;
  }
  let closed: Promise<void> | null = null;
  return {
    db,
    store,
    redis,
    close: () =>
      (closed ??= (async () => {
        if (store instanceof S3Store) store.client.destroy();
        await redis?.close();
        await db.destroy();
      })()),
  };
}

/**
 * The generation queue: on Redis (BullMQ) when `KEYFRAME_REDIS_URL` is set, else on the database
 * (src/queue/). One object holds both sides; each role takes only the side it uses (`producerOf`,
 * `consumerOf`), so an api process can never start consuming.
 */
export function openJobQueue(config: Config, foundation: Pick<Foundation, 'db' | 'redis'>, log: FastifyBaseLogger): JobQueue {
  const options = {
    concurrency: config.generation.concurrency,
    maxAttempts: config.generation.maxAttempts,
    leaseMs: config.generation.leaseSeconds * 1000,
    onError: (err: unknown, jobId: string) => log.error({ err, subject: jobId }, 'generation error'),
  };
  if (foundation.redis) {
    return new BullmqQueue(foundation.db, { ...options, redis: foundation.redis, log: (message, details) => log.info(details, message) });
  }
  return new InProcessQueue(foundation.db, options);
}

/** What the api role enqueues with: it never starts a consumer, so no job ever runs in that process. */
export function openJobProducer(config: Config, foundation: Pick<Foundation, 'db' | 'redis'>, log: FastifyBaseLogger): JobProducer {
  return producerOf(openJobQueue(config, foundation, log));
}

/** What the worker role consumes with; its stop also releases the queue's producer side (reconcile enqueues through it). */
export function openJobConsumer(config: Config, foundation: Pick<Foundation, 'db' | 'redis'>, log: FastifyBaseLogger): JobConsumer {
  const queue = openJobQueue(config, foundation, log);
  return {
    start: (handler) => queue.start(handler),
    stop: async () => {
      await queue.stop();
      await queue.close();
    },
  };
}

/** Only the enqueue side of a queue: nothing holding it can start (or stop) consuming. */
export function producerOf(queue: JobProducer): JobProducer {
  return { enqueue: (jobId) => queue.enqueue(jobId), close: () => queue.close() };
}

/** Only the consuming side of a queue. */
export function consumerOf(queue: JobConsumer): JobConsumer {
  return { start: (handler) => queue.start(handler), stop: () => queue.stop() };
}

/**
 * The process's one metrics registry (src/metrics/prometheus.ts), made here and handed down to
 * the domain services (as their Telemetry), the HTTP app and the metrics listener. The queue
 * depth gauge is read from `db` at each scrape. Null when nothing could read it (neither
 * `KEYFRAME_METRICS_TOKEN` nor `KEYFRAME_METRICS_LISTEN`): then no request and no event pays for
 * counting.
 */
export function openMetrics(config: Pick<Config, 'surfaces'>, db: Db, log: FastifyBaseLogger): PrometheusMetrics | null {
  if (config.surfaces.metricsToken === null && config.surfaces.metricsListen === null) return null;
  return new PrometheusMetrics({
    queueDepth: () => queueDepth(db),
    onCollectError: (err) => log.warn({ err }, 'metrics: the queue depth could not be read'),
  });
}

/**
 * The metrics listener of `KEYFRAME_METRICS_LISTEN` (GET /metrics, no token), in every role;
 * null when the setting is absent. The role closes it first at shutdown.
 */
export async function openMetricsListener(
  config: Pick<Config, 'surfaces'>,
  metrics: PrometheusMetrics | null,
  log: FastifyBaseLogger,
): Promise<MetricsListener | null> {
  const address = config.surfaces.metricsListen;
  if (address === null || metrics === null) return null;
  const listener = await startMetricsListener(metrics, address, (err) => log.warn({ err }, 'metrics listener error'));
  log.info({ url: `${listener.url}/metrics` }, 'metrics listener started');
  return listener;
}

/** One readiness check's outcome, as /readyz reports it. */
export interface CheckResult {
  ok: boolean;
  /** Milliseconds the check took (up to the timeout). */
  ms: number;
  /** `timeout` or `error` when not ok; the detail goes to the log only (/readyz answers anyone). */
  error?: 'timeout' | 'error';
}

export interface Readiness {
  ok: boolean;
  checks: Record<string, CheckResult>;
}

/** Each readiness check's time limit: a dependency slower than this is as good as down for a load balancer. */
export const READINESS_TIMEOUT_MS = 2000;

/**
 * The checks /readyz runs, all at once, each bounded by `timeoutMs`: the database (a trivial query),
 * the store (a HEAD of a key that never exists, which must answer "missing", not throw) and, when
 * configured, Redis (a PING).
 */
export function readinessChecks(
  foundation: Pick<Foundation, 'db' | 'store' | 'redis'>,
  log: FastifyBaseLogger,
  timeoutMs = READINESS_TIMEOUT_MS,
): () => Promise<Readiness> {
  const checks: Record<string, () => Promise<unknown>> = {
    database: () => sql`select 1 as ok`.execute(foundation.db),
    store: () => foundation.store.head('keyframe-readiness-probe/absent'),
  };
  const redis = foundation.redis;
  if (redis) checks.redis = () => redis.client.ping();
  return async () => {
    const entries = await Promise.all(
      Object.entries(checks).map(async ([name, check]) => [name, await bounded(name, check, timeoutMs, log)] as const),
    );
    const results = Object.fromEntries(entries);
    return { ok: entries.every(([, r]) => r.ok), checks: results };
  };
}

async function bounded(name: string, check: () => Promise<unknown>, timeoutMs: number, log: FastifyBaseLogger): Promise<CheckResult> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const elapsed = () => Math.round(performance.now() - started);
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  // A check still running after its timeout settles later; its failure is logged, never unhandled.
  const run = check().then(
    () => 'ok' as const,
    (err: unknown) => {
      log.warn({ err, check: name }, 'readiness check failed');
      return 'error' as const;
    },
  );
  try {
    const outcome = await Promise.race([run, timedOut]);
    if (outcome === 'ok') return { ok: true, ms: elapsed() };
    if (outcome === 'timeout') log.warn({ check: name, timeoutMs }, 'readiness check timed out');
    return { ok: false, ms: elapsed(), error: outcome };
  } finally {
    clearTimeout(timer);
  }
}

/** The URL form of a bind address: brackets around IPv6, and 0.0.0.0 reached at loopback. */
export const hostForUrl = (host: string) => (host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host);
