import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import type { Db } from '../db/database.js';
import { UploadCleanup } from '../domain/lifecycle/cleanup.js';
import { retentionPolicyOf } from '../domain/lifecycle/policy.js';
import type { Telemetry } from '../domain/telemetry.js';
import type { ObjectStore } from '../storage/object-store.js';

/**
 * The upload lifecycle's cleanup job (issue 15) as the roles that run jobs wire it (the
 * embedded `serve` and the worker role, through src/generation-pipeline.ts, next to the
 * multipart sweep): on a timer, one runner at a time across processes (its lease), a
 * failed run logged, never fatal.
 */
export function openUploadCleanup(config: Config, db: Db, store: ObjectStore, log: FastifyBaseLogger, telemetry?: Telemetry): UploadCleanup {
  return new UploadCleanup(db, store, {
    policy: retentionPolicyOf(config),
    intervalMs: config.retention.cleanupIntervalSeconds * 1000,
    batchSize: config.retention.cleanupBatch,
    budgetMs: config.retention.cleanupBudgetSeconds * 1000,
    log: (message, details) => log.warn(details, message),
    telemetry,
  });
}
