import type { Config } from '../../config.js';
import { databaseTargetOf, openDatabase } from '../../db/database.js';
import { UploadCleanup, type CleanupResult } from '../../domain/lifecycle/cleanup.js';
import { retentionPolicyOf } from '../../domain/lifecycle/policy.js';
import { findDrift, repairDrift, type DriftReport, type RepairResult } from '../../domain/lifecycle/reconcile.js';
import { openStore } from '../../storage/open-store.js';
import type { ObjectStore } from '../../storage/object-store.js';
import { S3Store } from '../../storage/s3/s3-store.js';

/** Cleanup runs one `gc` makes at most: each is bounded, a larger backlog waits for the next gc or the timer. */
const MAX_CLEANUP_RUNS = 20;

export interface GcOutcome {
  report: DriftReport;
  /** Null for a dry run. */
  applied: { cleanup: CleanupResult[]; repaired: RepairResult } | null;
}

/**
 * Opens the configured database (never migrating it) and store (leaving the bucket's settings
 * alone), then: without `dryRun`, runs the retention cleanup until it has nothing left (or its
 * run bound); finds the drift between store and records; without `dryRun`, repairs it.
 */
export async function runGc(config: Config, options: { dryRun: boolean }): Promise<GcOutcome> {
  const db = await openDatabase(databaseTargetOf(config), { migrate: false });
  let store: ObjectStore | null = null;
  try {
    // The disk store signs nothing here: any origin will do.
    store = await openStore(config, config.publicUrl ?? `http://${config.host}:${config.port}`, { bootstrap: false });
    const cleanup: CleanupResult[] = [];
    if (!options.dryRun) {
      const job = new UploadCleanup(db, store, { policy: retentionPolicyOf(config) });
      for (let i = 0; i < MAX_CLEANUP_RUNS; i += 1) {
        const result = await job.runOnce();
        cleanup.push(result);
        if (!result.ran || result.complete) break;
      }
    }
    const now = new Date();
    const report = await findDrift(db, store, { now, minOrphanAgeSeconds: config.uploadUrlTtlSeconds });
    if (options.dryRun) return { report, applied: null };
    return { report, applied: { cleanup, repaired: await repairDrift(db, store, report, now) } };
  } finally {
    if (store instanceof S3Store) store.client.destroy();
    await db.destroy();
  }
}
