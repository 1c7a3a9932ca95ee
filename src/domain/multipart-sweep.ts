import type { Db } from '../db/database.js';
import type { ObjectStore } from '../storage/object-store.js';
import { abortExpiredUploads, MULTIPART_LIFETIME_SECONDS, type ExpiredUpload } from './multipart-uploads.js';
import { uploadKeyFamily } from './uploads.js';
import { NO_TELEMETRY, type Telemetry } from './telemetry.js';
import { PeriodicRun } from '../periodic-run.js';

/** Expired uploads one run aborts, at most (a run that hits it runs again at once, up to MAX_BATCHES_PER_RUN). */
export const SWEEP_BATCH = 100;
const MAX_BATCHES_PER_RUN = 10;

export interface MultipartSweepOptions {
  /** How often it runs (config `KEYFRAME_MULTIPART_SWEEP_MINUTES`). */
  intervalMs: number;
  /** The uploads' lifetime (default MULTIPART_LIFETIME_SECONDS): a disk upload directory older than it is an orphan candidate. */
  lifetimeSeconds?: number;
  batchSize?: number;
  /** Clock, for tests (default: now). */
  now?: () => Date;
  log?: (message: string, details: Record<string, unknown>) => void;
}

export interface SweepResult {
  /** Expired multipart uploads whose record this run closed and whose parts it dropped. */
  aborted: ExpiredUpload[];
  /** Disk upload directories no open record names (crash leftovers) that this run removed. */
  orphans: number;
}

/**
 * The periodic sweep of multipart uploads (issue 13): every `intervalMs` it aborts the
 * uploads of every user whose lifetime ended uncompleted (`abortExpiredUploads`: claim
 * the record, then drop the parts; safe with any number of sweepers at once), in
 * batches of `batchSize`. On the disk store it then removes upload directories older
 * than the lifetime that no `pending` record names (a crash between the claim and the
 * abort, or between the store's create and the record's insert, leaves them); on S3
 * the bucket's lifecycle rule (`S3_APPLY_LIFECYCLE`) is that backstop. Runs where jobs
 * run (the worker role and the embedded `serve`).
 */
export class MultipartSweep {
  private readonly periodic: PeriodicRun;
  private readonly lifetimeMs: number;
  private readonly batchSize: number;
  private readonly now: () => Date;
  /** Counts the uploads it expires (src/domain/telemetry.ts). */
  private readonly telemetry: Telemetry;

  constructor(
    private readonly db: Db,
    private readonly store: ObjectStore,
    private readonly options: MultipartSweepOptions & { telemetry?: Telemetry },
  ) {
    this.telemetry = options.telemetry ?? NO_TELEMETRY;
    this.lifetimeMs = (options.lifetimeSeconds ?? MULTIPART_LIFETIME_SECONDS) * 1000;
    this.batchSize = options.batchSize ?? SWEEP_BATCH;
    this.now = options.now ?? (() => new Date());
    this.periodic = new PeriodicRun(() => this.runOnce(), options.intervalMs, (err) => this.options.log?.('multipart sweep failed', { err }));
  }

  /** Runs once now, then every interval; a run still going when the next is due is not doubled. */
  start(): void {
    this.periodic.start();
  }

  /** Stops the timer and waits for a run in progress. */
  stop(): Promise<void> {
    return this.periodic.stop();
  }

  /** One run: expired uploads (up to MAX_BATCHES_PER_RUN batches), then the disk store's orphans (one batch). */
  async runOnce(): Promise<SweepResult> {
    const aborted: ExpiredUpload[] = [];
    for (let i = 0; i < MAX_BATCHES_PER_RUN; i++) {
      const { aborted: batch, full } = await abortExpiredUploads(this.db, this.store, {
        now: this.now(),
        limit: this.batchSize,
        onError: (err, upload) => this.options.log?.('multipart sweep: abort failed (record closed; parts left to the backstop)', { err, ...upload }),
      });
      aborted.push(...batch);
      for (const upload of batch) this.telemetry.uploadSettled('expired', uploadKeyFamily(upload.key));
      // Rows another sweeper claimed first count as read: stop only when the read came up short.
      if (!full) break;
    }
    return { aborted, orphans: await this.sweepOrphans() };
  }

  private async sweepOrphans(): Promise<number> {
    if (this.store.staleMultipartUploads === undefined) return 0;
    const before = new Date(this.now().getTime() - this.lifetimeMs);
    let removed = 0;
    for (const upload of await this.store.staleMultipartUploads(before)) {
      const record = await this.db
        .selectFrom('uploads')
        .select(['state', 'multipart_upload_id'])
        .where('s3_key', '=', upload.key)
        .executeTakeFirst();
      // A pending record naming it is the expiry sweep's (claimed first, then aborted), never removed from under it.
      if (record && record.state === 'pending' && record.multipart_upload_id === upload.uploadId) continue;
      await this.store.abortMultipart(upload.key, upload.uploadId);
      removed++;
      if (removed >= this.batchSize) break;
    }
    return removed;
  }
}
