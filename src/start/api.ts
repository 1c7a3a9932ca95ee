import path from 'node:path';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { Config } from '../config.js';
import type { Db } from '../db/database.js';
import { ApiKeys } from '../domain/api-keys.js';
import type { RunnerCallbacks } from '../domain/generations/runner.js';
import { MultipartUploads } from '../domain/multipart-uploads.js';
import { Uploads } from '../domain/uploads.js';
import { UploadQuota } from '../domain/usage/upload-quota.js';
import { DISK_RESERVATION_GRACE_MS } from '../domain/usage/upload-usage.js';
import { Verifier } from '../domain/verification.js';
import { freePort } from '../free-port.js';
import { openApiRunnerCallbacks, openGenerationBasics, openGenerationService, type GenerationBasics } from '../generation-pipeline.js';
import { buildApp } from '../http/app.js';
import { FfprobeMediaProbe } from '../media/ffprobe.js';
import type { JobProducer } from '../queue/job-queue.js';
import type { PrometheusMetrics } from '../metrics/prometheus.js';
import { openLimitsRedis, RedisUploadGrants } from '../redis/upload-grants.js';
import type { ObjectStore } from '../storage/object-store.js';
import { retentionPolicyOf } from '../domain/lifecycle/policy.js';
import {
  createLogger,
  hostForUrl,
  openDatabaseFor,
  openFoundation,
  openJobProducer,
  openMetrics,
  openMetricsListener,
  readinessChecks,
  type Foundation,
} from './shared.js';
import type { MetricsListener } from '../metrics/metrics-listener.js';

/** A process serving HTTP: the `api` role, or the embedded `all` (src/start/embedded.ts). */
export interface RunningServer {
  app: FastifyInstance;
  db: Db;
  /** The object store the server uses (tests inspect objects through it). */
  store: ObjectStore;
  /** The base URL the server answers at. */
  url: string;
  log: FastifyBaseLogger;
  /** The orderly shutdown: stops taking work, lets running requests finish, hands running jobs back, closes pools and clients. Idempotent. */
  close(): Promise<void>;
}

/** Where the API will listen, known before the app is built: upload URLs need the real port (PORT=0 takes a free one now). */
export async function apiAddress(config: Config): Promise<{ port: number; url: string; publicUrl: string }> {
  const port = config.port === 0 ? await freePort(config.host) : config.port;
  const url = `http://${hostForUrl(config.host)}:${port}`;
  return { port, url, publicUrl: config.publicUrl ?? url };
}

/** The HTTP app on a foundation: every route, /healthz and /readyz, with the generation service on `producer`. */
export async function buildApiApp(
  config: Config,
  foundation: Foundation,
  log: FastifyBaseLogger,
  basics: GenerationBasics,
  producer: JobProducer,
  runnerCallbacks: RunnerCallbacks,
  /** The process's metrics (src/start/shared.ts `openMetrics`); none: nothing is counted and there is no /metrics. */
  metrics: PrometheusMetrics | null = null,
): Promise<FastifyInstance> {
  const telemetry = metrics ?? undefined;
  const { db, store } = foundation;
  // Each reference is probed on a private copy (<dataDir>/tmp/verify, 0700), never through a URL.
  const verifier = new Verifier(db, store, { scratchDir: path.join(config.dataDir, 'tmp', 'verify'), probe: new FfprobeMediaProbe(), telemetry, retention: retentionPolicyOf(config) });
  // In a cluster the presign limits count in Redis, on a connection that fails fast (see openLimitsRedis).
  const limitsRedis =
    foundation.redis && (await openLimitsRedis(foundation.redis, (err) => log.warn({ err }, 'redis connection error (presign limits)')));
  // One quota for presigns and multipart uploads alike.
  const quota = new UploadQuota(db, config.limits, {
    // On S3 an object PUT and never verified stays pending: its reservation stands until it is resolved.
    reservationGraceMs: config.storage === 'disk' ? DISK_RESERVATION_GRACE_MS : Infinity,
    urlTtlSeconds: config.uploadUrlTtlSeconds,
    shared: limitsRedis
      ? new RedisUploadGrants(limitsRedis, (err) => log.warn({ err }, 'upload quota: a grant not settled in Redis counts until its deadline'))
      : undefined,
  });
  const uploads = new Uploads(db, store, config.uploadUrlTtlSeconds, quota, { telemetry });
  if (config.storage === 'disk') {
    const recorded = await uploads.recordArrivalsLeftBehind();
    if (recorded > 0) log.info({ recorded }, 'recorded uploads whose arrival a stop cut off');
  }
  return buildApp({
    apiKeys: new ApiKeys(db),
    uploads,
    multipart: new MultipartUploads(db, store, config.uploadUrlTtlSeconds, quota, { telemetry }),
    uploadUrlTtlSeconds: config.uploadUrlTtlSeconds,
    limits: config.limits,
    limitsRedis,
    verifier,
    generations: openGenerationService(config, db, store, verifier, basics, producer),
    models: basics.registry,
    runnerCallbacks,
    store,
    corsOrigins: config.corsOrigins,
    surfaces: config.surfaces,
    metrics,
    loggerInstance: log,
    readiness: readinessChecks(foundation, log),
  });
}

/**
 * Composition root of the `api` role: the HTTP API only. It enqueues generations and never
 * starts a consumer, so no job runs in this process; what it creates stays queued until a
 * worker (`keyframe worker`, or an embedded `keyframe serve`) takes it.
 */
export async function startApi(config: Config, log: FastifyBaseLogger = createLogger(config)): Promise<RunningServer> {
  const db = await openDatabaseFor(config);
  let foundation: Foundation | null = null;
  let app: FastifyInstance | null = null;
  let producer: JobProducer | null = null;
  let metricsListener: MetricsListener | null = null;
  try {
    const { port, url, publicUrl } = await apiAddress(config);
    foundation = await openFoundation(config, db, publicUrl, log);
    const basics = openGenerationBasics(config);
    producer = openJobProducer(config, foundation, log);
    const metrics = openMetrics(config, db, log);
    app = await buildApiApp(config, foundation, log, basics, producer, openApiRunnerCallbacks(config, db, log), metrics);
    await app.listen({ host: config.host, port });
    metricsListener = await openMetricsListener(config, metrics, log);
    const scrapes = metricsListener;
    const running = app;
    const enqueuer = producer;
    const opened = foundation;
    let closing: Promise<void> | null = null;
    return {
      app: running,
      db,
      store: opened.store,
      url,
      log,
      close: () =>
        (closing ??= (async () => {
          await scrapes?.close();
          // Stops accepting and waits for the requests in flight (bounded by the shutdown timeout).
          await running.close();
          await enqueuer.close();
          await opened.close();
        })()),
    };
  } catch (err) {
    await metricsListener?.close();
    await app?.close();
    await producer?.close();
    await (foundation ? foundation.close() : db.destroy());
    throw err;
  }
}
