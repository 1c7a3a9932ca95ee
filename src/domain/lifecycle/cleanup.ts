import os from 'node:os';
import type { Db } from '../../db/database.js';
import type { UploadState } from '../../db/schema.js';
import type { ObjectStore } from '../../storage/object-store.js';
import { systemClock, type Clock } from '../clock.js';
import { PeriodicRun } from '../../periodic-run.js';
import { randomId } from '../ids.js';
import { uploadKeyFamily } from '../uploads.js';
import { NO_TELEMETRY, type Telemetry } from '../telemetry.js';
import { deleteAfter } from './delete-after.js';
import { takeLease, releaseLease } from './lease.js';
import { finaliseUploadDeleted, finaliseVideoDeleted, markUploadDeleting, markVideoDeleting } from './marks.js';
import { minusSeconds, usedReferenceRule, type RetentionPolicy } from './policy.js';

/** The lease one cleanup runner holds at a time. */
export const CLEANUP_LEASE = 'upload-cleanup';
/** Rows one step reads at once (config `KEYFRAME_CLEANUP_BATCH`). */
export const CLEANUP_BATCH = 100;
/** Batches one step reads in one run, at most: a backlog drains over several runs. */
const MAX_BATCHES_PER_STEP = 5;
/** How long one run may work (config `KEYFRAME_CLEANUP_BUDGET`). */
export const CLEANUP_BUDGET_MS = 30_000;

/**
 * Where a crash test stops a run (test/domain/lifecycle/cleanup-crash.test.ts): awaited after
 * a record is marked and after its object is deleted, before the record is finalised.
 */
export interface CleanupSeams {
  afterMark?(key: string): Promise<void>;
  afterDelete?(key: string): Promise<void>;
}

export interface CleanupOptions {
  policy: RetentionPolicy;
  /** Between two runs of the timer (config `KEYFRAME_CLEANUP_INTERVAL`). */
  intervalMs?: number;
  batchSize?: number;
  budgetMs?: number;
  clock?: Clock;
  /** Who holds the lease: default host, pid and a random part. */
  holder?: string;
  log?: (message: string, details: Record<string, unknown>) => void;
  seams?: CleanupSeams;
  /** Counts expiries and deletions (the process's metrics); default none. */
  telemetry?: Telemetry;
}

/** What one run did. */
export interface CleanupResult {
  /** False when another runner held the lease: this run did nothing. */
  ran: boolean;
  /** Records left `deleting` (or videos left marked) by an earlier run, finished now. */
  resumed: number;
  /** Pending uploads stored `expired`. */
  expired: number;
  /** Pending uploads whose object had arrived unannounced, recorded `uploaded` (the retention applies from now). */
  arrived: number;
  /** Uploads no generation used, deleted. */
  unused: number;
  /** Used references, deleted. */
  used: number;
  /** Videos deleted. */
  videos: number;
  /** False when the time budget or the batch bound stopped a step: the next run goes on. */
  complete: boolean;
}

/**
 * The cleanup job of the upload lifecycle (issue 15, docs/lifecycle.md). A run takes the
 * lease `upload-cleanup` (one runner at a time, whatever the number of processes; a run
 * that cannot take it does nothing), then, each step bounded in rows and all of it in time:
 *
 * 1. resumes records a crashed run left marked: deletes the object (idempotent), finalises;
 * 2. stores `expired` for single-PUT uploads still pending past their URL's expiry and a
 *    grace, with no object in the store (one that has an object is recorded `uploaded`:
 *    its status call verifies it, and the retention applies to it);
 * 3. deletes uploads no generation ever named, past the unused retention;
 * 4. deletes used references past theirs (never one a queued or running generation names);
 * 5. deletes videos past the video retention.
 *
 * Every deletion marks first, deletes the object, then finalises (src/domain/lifecycle/marks.ts).
 * Runs where jobs run (the embedded `serve`, the worker role) on a timer; `runOnce` is
 * also what `keyframe gc` calls.
 */
export class UploadCleanup {
  private readonly periodic: PeriodicRun;
  private readonly clock: Clock;
  private readonly batch: number;
  private readonly budgetMs: number;
  private readonly holder: string;
  private readonly telemetry: Telemetry;

  constructor(
    private readonly db: Db,
    private readonly store: ObjectStore,
    private readonly options: CleanupOptions,
  ) {
    this.clock = options.clock ?? systemClock;
    this.batch = options.batchSize ?? CLEANUP_BATCH;
    this.budgetMs = options.budgetMs ?? CLEANUP_BUDGET_MS;
    this.telemetry = options.telemetry ?? NO_TELEMETRY;
    this.holder = options.holder ?? `${os.hostname()}:${process.pid}:${randomId('cleanup')}`;
    this.periodic = new PeriodicRun(() => this.runOnce(), options.intervalMs ?? 600_000, (err) => this.options.log?.('upload cleanup failed', { err }));
  }

  /** Runs once now, then every interval; a run still going when the next is due is not doubled. A failed run is logged. */
  start(): void {
    this.periodic.start();
  }

  /** Stops the timer and waits for a run in progress. */
  stop(): Promise<void> {
    return this.periodic.stop();
  }

  async runOnce(): Promise<CleanupResult> {
    const result: CleanupResult = { ran: false, resumed: 0, expired: 0, arrived: 0, unused: 0, used: 0, videos: 0, complete: true };
    // The lease outlasts the budget twice over: a run overrunning it (one slow delete) still holds it.
    if (!(await takeLease(this.db, CLEANUP_LEASE, this.holder, this.clock.now(), 2 * this.budgetMs))) return result;
    result.ran = true;
    const deadline = performance.now() + this.budgetMs;
    const run = new Run(deadline, this.batch, result);
    try {
      await this.resume(run);
      await this.expire(run);
      await this.deleteUnused(run);
      await this.deleteUsed(run);
      await this.deleteVideos(run);
    } finally {
      await releaseLease(this.db, CLEANUP_LEASE, this.holder);
    }
    return result;
  }

  // ---- the steps ------------------------------------------------------------------

  private async resume(run: Run): Promise<void> {
    const uploads = await this.db.selectFrom('uploads').select('s3_key').where('state', '=', 'deleting').limit(this.batch).execute();
    for (const { s3_key } of uploads) {
      if (!run.inTime()) return;
      if (await this.removeObject(s3_key)) {
        await finaliseUploadDeleted(this.db, s3_key, this.clock.now());
        run.result.resumed++;
      }
    }
    if (uploads.length === this.batch) run.result.complete = false;
    const videos = await this.db
      .selectFrom('generations')
      .select(['id', 'video_key'])
      .where('video_deleted_at', 'is', null)
      .where('video_delete_marked_at', 'is not', null)
      .limit(this.batch)
      .execute();
    for (const { id, video_key } of videos) {
      if (!run.inTime()) return;
      if (video_key === null || (await this.removeObject(video_key))) {
        await finaliseVideoDeleted(this.db, id, this.clock.now());
        run.result.resumed++;
      }
    }
    if (videos.length === this.batch) run.result.complete = false;
  }

  private async expire(run: Run): Promise<void> {
    const cutoff = minusSeconds(this.clock.now(), this.options.policy.expiryGraceSeconds);
    await run.batches(async () => {
      const rows = await this.db
        .selectFrom('uploads')
        .select('s3_key')
        .where('state', '=', 'pending')
        .where('expires_at', '<=', cutoff)
        .where('multipart_upload_id', 'is', null)
        .orderBy('expires_at')
        .limit(this.batch)
        .execute();
      for (const { s3_key } of rows) {
        if (!run.inTime()) return 0;
        await this.expireOne(s3_key, run);
      }
      return rows.length;
    });
  }

  /**
   * A lapsed pending upload: an object in the store is an arrival nobody announced (recorded
   * `uploaded`); none, and the record is stored `expired`. An object landing between the HEAD
   * and that UPDATE (a PUT begun before the expiry, still streaming after the grace) is deleted:
   * an expired record never keeps one.
   */
  private async expireOne(key: string, run: Run): Promise<void> {
    const info = await this.store.head(key);
    const now = this.clock.now().toISOString();
    const pending = this.db.updateTable('uploads').where('s3_key', '=', key).where('state', '=', 'pending').where('multipart_upload_id', 'is', null);
    if (info !== null) {
      const arrived = await pending.set({ state: 'uploaded', size: info.size, sha256: info.sha256, uploaded_at: now }).executeTakeFirst();
      if (arrived.numUpdatedRows === 1n) run.result.arrived++;
      return;
    }
    const expired = await pending.set({ state: 'expired', expired_at: now }).executeTakeFirst();
    if (expired.numUpdatedRows !== 1n) return;
    run.result.expired++;
    this.telemetry.uploadSettled('expired', uploadKeyFamily(key));
    if ((await this.store.head(key)) !== null) await this.store.delete(key);
  }

  private async deleteUnused(run: Run): Promise<void> {
    const seconds = this.options.policy.unusedSeconds;
    if (seconds === null) return;
    const cutoff = minusSeconds(this.clock.now(), seconds);
    for (const state of ['verified', 'uploaded'] as const satisfies UploadState[]) {
      let after = '';
      await run.batches(async () => {
        const rows = await this.db
          .selectFrom('uploads')
          .select(['s3_key', 'uploaded_at'])
          .where('state', '=', state)
          .where('last_used_at', 'is', null)
          .where('uploaded_at', '>', after)
          .where('uploaded_at', '<=', cutoff)
          .orderBy('uploaded_at')
          .limit(this.batch)
          .execute();
        for (const row of rows) {
          if (!run.inTime()) return 0;
          after = row.uploaded_at!;
          const marked = await markUploadDeleting(this.db, row.s3_key, 'unused', this.clock.now(), (_trx, now) => now.last_used_at === null && now.uploaded_at !== null && now.uploaded_at <= cutoff);
          if (marked && (await this.finishUpload(row.s3_key))) {
            run.result.unused++;
            this.telemetry.retentionDeleted('unused_upload');
          }
        }
        return rows.length;
      });
    }
  }

  private async deleteUsed(run: Run): Promise<void> {
    const policy = this.options.policy;
    const rule = usedReferenceRule(policy);
    if (rule === 'forever') return;
    // Its generations were created (last_used_at) before they settled: none can be due before this.
    const cutoff = minusSeconds(this.clock.now(), rule === 'after-settled' ? policy.usedSeconds! : policy.videosSeconds!);
    let after = '';
    await run.batches(async () => {
      const rows = await this.db
        .selectFrom('uploads')
        .select(['s3_key', 'last_used_at'])
        .where('state', '=', 'verified')
        .where('last_used_at', 'is not', null)
        .where('last_used_at', '>', after)
        .where('last_used_at', '<=', cutoff)
        .orderBy('last_used_at')
        .limit(this.batch)
        .execute();
      for (const row of rows) {
        if (!run.inTime()) return 0;
        after = row.last_used_at!;
        const now = this.clock.now();
        const marked = await markUploadDeleting(this.db, row.s3_key, 'used', now, async (trx, current) => {
          const due = await deleteAfter(trx, policy, current);
          return due !== null && due <= now.toISOString();
        });
        if (marked && (await this.finishUpload(row.s3_key))) {
          run.result.used++;
          this.telemetry.retentionDeleted('used_reference');
        }
      }
      return rows.length;
    });
  }

  private async deleteVideos(run: Run): Promise<void> {
    const seconds = this.options.policy.videosSeconds;
    if (seconds === null) return;
    const cutoff = minusSeconds(this.clock.now(), seconds);
    await run.batches(async () => {
      const rows = await this.db
        .selectFrom('generations')
        .select(['id', 'video_key'])
        .where('status', '=', 'completed')
        .where('video_delete_marked_at', 'is', null)
        .where('completed_at', '<=', cutoff)
        .orderBy('completed_at')
        .limit(this.batch)
        .execute();
      for (const { id, video_key } of rows) {
        if (!run.inTime()) return 0;
        if (!(await markVideoDeleting(this.db, id, this.clock.now()))) continue;
        await this.options.seams?.afterMark?.(video_key ?? id);
        if (video_key !== null && !(await this.removeObject(video_key))) continue;
        await this.options.seams?.afterDelete?.(video_key ?? id);
        await finaliseVideoDeleted(this.db, id, this.clock.now());
        run.result.videos++;
        this.telemetry.retentionDeleted('video');
      }
      return rows.length;
    });
  }

  // ---- helpers --------------------------------------------------------------------

  /** After the mark: the object, then the record. False when the delete failed (left for the next run's resume). */
  private async finishUpload(key: string): Promise<boolean> {
    await this.options.seams?.afterMark?.(key);
    if (!(await this.removeObject(key))) return false;
    await this.options.seams?.afterDelete?.(key);
    await finaliseUploadDeleted(this.db, key, this.clock.now());
    return true;
  }

  private async removeObject(key: string): Promise<boolean> {
    try {
      await this.store.delete(key);
      return true;
    } catch (err) {
      this.options.log?.('upload cleanup: delete failed (the record stays marked; the next run retries)', { err, key });
      return false;
    }
  }
}

/** One run's bounds: its deadline and its batches per step. */
class Run {
  constructor(
    private readonly deadline: number,
    private readonly batchSize: number,
    readonly result: CleanupResult,
  ) {}

  inTime(): boolean {
    if (performance.now() < this.deadline) return true;
    this.result.complete = false;
    return false;
  }

  /** Calls `batch` (which returns the rows it read) until one comes up short, up to MAX_BATCHES_PER_STEP times. */
  async batches(batch: () => Promise<number>): Promise<void> {
    for (let i = 0; i < MAX_BATCHES_PER_STEP; i++) {
      if (!this.inTime()) return;
      const read = await batch();
      if (read < this.batchSize) return;
    }
    this.result.complete = false;
  }
}
