import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { LimitsConfig, SurfacesConfig } from '../config.js';
import type { ApiKeys } from '../domain/api-keys.js';
import type { Generations } from '../domain/generations/generations.js';
import type { ModelRegistry } from '../domain/generations/model-registry.js';
import type { RunnerCallbacks } from '../domain/generations/runner.js';
import type { MultipartUploads } from '../domain/multipart-uploads.js';
import type { Uploads } from '../domain/uploads.js';
import type { Verifier } from '../domain/verification.js';
import type { LimitsRedis } from '../redis/upload-grants.js';
import { DiskStore } from '../storage/disk/disk-store.js';
import type { ObjectStore } from '../storage/object-store.js';
import { clientErrorHandler, frameworkErrorHandler, installErrorHandling } from './errors.js';
import { methodNotAllowed } from './method-not-allowed.js';
import { closeUnusedConnectionsOnClose } from './unused-connections.js';
import { OPERATIONS_DOCS, registerOpenApi } from './openapi.js';
import { recordRequestMetrics, type RequestMetrics } from './metrics-hooks.js';
import type { MetricsExposition } from '../metrics/metrics-listener.js';
import { metricsRoutes } from './routes/metrics.js';
import { multipartRoutes } from './routes/multipart.js';
import { objectRoutes } from './routes/objects.js';
import { generationRoutes } from './routes/generations.js';
import { consoleRoutes } from './routes/console.js';
import { modelRoutes } from './routes/models.js';
import { presignRoutes } from './routes/presign.js';
import { runnerCallbackRoutes } from './routes/runner-callbacks.js';
import { uploadStatusRoutes } from './routes/upload-status.js';

/** What the HTTP layer is built from: the domain services and the store. */
export interface AppDependencies {
  apiKeys: ApiKeys;
  uploads: Uploads;
  /** Multipart uploads on Uppy Companion's S3 routes (src/http/routes/multipart.ts). */
  multipart: MultipartUploads;
  /** Lifetime of an upload URL in seconds (answered by `/api/s3/params`). */
  uploadUrlTtlSeconds: number;
  verifier: Verifier;
  generations: Generations;
  /** The model registry, answered by GET /api/models (src/http/routes/models.ts). */
  models: ModelRegistry;
  /** Completion callbacks of model workers (runner `http`). */
  runnerCallbacks: RunnerCallbacks;
  store: ObjectStore;
  corsOrigins: string[];
  /** Logger options, for an app that makes its own logger; or `loggerInstance`, the process's one logger (src/start/shared.ts). */
  logger?: FastifyServerOptions['logger'];
  loggerInstance?: FastifyBaseLogger;
  /** What GET /readyz checks (src/start/shared.ts `readinessChecks`); without it /readyz checks nothing and answers 200. */
  readiness?: () => Promise<{ ok: boolean; checks: Record<string, { ok: boolean; ms: number; error?: string }> }>;
  /** Per-user limits; the presign rate limit is enforced by the route (src/http/routes/presign.ts). */
  limits: LimitsConfig;
  /**
   * In a cluster, the Redis the presign rate limit counts in, so that the limit holds across the
   * nodes (src/redis/upload-grants.ts `openLimitsRedis`); without it, in this process's memory.
   */
  limitsRedis?: LimitsRedis | null;
  /** The console, the API reference and the metrics endpoint: on or off, and the metrics token. */
  surfaces: SurfacesConfig;
  /** The process's metrics (src/metrics/prometheus.ts): every request is counted, and GET /metrics serves them with the token. */
  metrics?: (RequestMetrics & MetricsExposition) | null;
}

/** JSON bodies of the API are small; anything larger is refused before parsing. */
const JSON_BODY_LIMIT = 1024 * 1024;

export async function buildApp(deps: AppDependencies): Promise<FastifyInstance> {
  const app = Fastify({
    ...(deps.loggerInstance ? { loggerInstance: deps.loggerInstance } : { logger: deps.logger }),
    // Malformed HTTP and URLs are answered in the envelope too, never with Fastify's own body.
    clientErrorHandler,
    frameworkErrors: frameworkErrorHandler,
    bodyLimit: JSON_BODY_LIMIT,
    // A client that sends nothing for 2 minutes is dropped, and no request, however
    // slowly it trickles (slow-loris), holds a socket and a temporary file past an hour.
    connectionTimeout: 120_000,
    requestTimeout: 3_600_000,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    // Keys of presigned URLs may be long; the default 100-char segment limit would 404 them.
    routerOptions: { maxParamLength: 1024 },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.decorateRequest('principal', null);
  installErrorHandling(app);
  closeUnusedConnectionsOnClose(app);
  if (deps.metrics) recordRequestMetrics(app, deps.metrics);

  if (deps.corsOrigins.length > 0) {
    await app.register(cors, {
      origin: deps.corsOrigins.includes('*') ? '*' : deps.corsOrigins,
      methods: ['GET', 'PUT', 'POST', 'HEAD', 'DELETE'],
      // `range` and the range headers: a page may fetch a part of a video from the disk store (206).
      allowedHeaders: ['authorization', 'content-type', 'content-length', 'range'],
      exposedHeaders: ['etag', 'content-range', 'accept-ranges', 'content-length'],
      maxAge: 600,
    });
  }

  await registerOpenApi(app, { docs: deps.surfaces.docs });

  // No global limit: only routes that set `config.rateLimit` are limited (the presign route, per user).
  // The store is the plugin's in-memory one, or in a cluster its Redis store: one counter per user
  // and window under the installation's prefix, incremented by one script, shared by every node.
  // Fail closed: when Redis does not answer, the store's error is not skipped (`skipOnError`) but
  // fails the presign (500 `server_error`, details in the log only), as the upload quota's count does:
  // skipping would leave every node unlimited for as long as Redis is away (docs/security.md).
  // No x-ratelimit-* headers on answers within the limit: they cost a measurable part of a
  // presign (docs/performance.md). A refusal carries them, and Retry-After.
  await app.register(rateLimit, {
    global: false,
    cache: 10_000,
    ...(deps.limitsRedis ? { redis: deps.limitsRedis.client, nameSpace: `${deps.limitsRedis.prefix}:presign-rate:`, skipOnError: false } : {}),
    addHeadersOnExceeding: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false },
  });
  await app.register(presignRoutes, { apiKeys: deps.apiKeys, uploads: deps.uploads, presignsPerMinute: deps.limits.presignsPerMinute });
  methodNotAllowed(app, '/api/s3/presign-upload', ['POST']);
  await app.register(multipartRoutes, {
    apiKeys: deps.apiKeys,
    uploads: deps.uploads,
    multipart: deps.multipart,
    presignsPerMinute: deps.limits.presignsPerMinute,
    urlTtlSeconds: deps.uploadUrlTtlSeconds,
  });
  methodNotAllowed(app, '/api/s3/multipart', ['POST']);
  methodNotAllowed(app, '/api/s3/multipart/:uploadId', ['GET', 'DELETE']);
  methodNotAllowed(app, '/api/s3/multipart/:uploadId/batch', ['GET']);
  methodNotAllowed(app, '/api/s3/multipart/:uploadId/:partNumber', ['GET']);
  methodNotAllowed(app, '/api/s3/multipart/:uploadId/complete', ['POST']);
  methodNotAllowed(app, '/api/s3/params', ['GET']);
  await app.register(uploadStatusRoutes, { apiKeys: deps.apiKeys, verifier: deps.verifier });
  methodNotAllowed(app, '/api/uploads/status', ['GET']);
  await app.register(generationRoutes, { apiKeys: deps.apiKeys, generations: deps.generations });
  methodNotAllowed(app, '/api/generations', ['POST']);
  methodNotAllowed(app, '/api/generations/:id', ['GET']);
  await app.register(modelRoutes, { apiKeys: deps.apiKeys, models: deps.models });
  methodNotAllowed(app, '/api/models', ['GET']);
  if (deps.surfaces.console) await app.register(consoleRoutes, { store: deps.store });
  await app.register(runnerCallbackRoutes, { callbacks: deps.runnerCallbacks });

  if (deps.store instanceof DiskStore) {
    await app.register(objectRoutes, { store: deps.store, uploads: deps.uploads });
  }

  if (deps.metrics) await app.register(metricsRoutes, { metrics: deps.metrics, token: deps.surfaces.metricsToken });
  // Liveness: the process answers. Readiness: its dependencies answer too (docs/api.md).
  app.get('/healthz', { config: OPERATIONS_DOCS.healthz }, async () => ({ ok: true }));
  app.get('/readyz', { config: OPERATIONS_DOCS.readyz }, async (_request, reply) => {
    const { ok, checks } = (await deps.readiness?.()) ?? { ok: true, checks: {} };
    reply.header('cache-control', 'no-store');
    if (ok) return { ok: true, checks };
    const failed = Object.keys(checks).filter((name) => !checks[name]!.ok);
    return reply.code(503).send({ ok: false, error: 'not_ready', message: `not ready: ${failed.join(', ')} failed`, failed, checks });
  });
  return app;
}
