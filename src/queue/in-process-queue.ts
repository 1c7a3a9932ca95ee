import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { sql } from 'kysely';
import { changeFeedOf } from '../db/change-feed.js';
import type { Db } from '../db/database.js';
import { dialectOf } from '../db/dialect.js';
import type { JobConsumer, JobHandler, JobProducer } from './job-queue.js';
import { CoalescingPump } from '../coalescing-pump.js';

/** How long a claim holds a job unless renewed; renewal and the recovery sweep run every third of it. */
export const DEFAULT_LEASE_MS = 30_000;
/** How often an idle consumer looks for jobs that other processes enqueued (PostgreSQL also hears NOTIFY). */
export const DEFAULT_POLL_MS = 1_000;
/** The channel enqueue NOTIFYs on PostgreSQL; every consumer LISTENs to it through the database's change feed. */
export const JOBS_CHANNEL = 'keyframe_jobs';

export interface InProcessQueueOptions {
  /** Jobs run at once. */
  concurrency: number;
  /** Starts of one job after which recovering it gives up on it. */
  maxAttempts: number;
  /** Where unexpected handler failures are reported. */
  onError: (err: unknown, jobId: string) => void;
  /** How long a claim holds a job without renewal (DEFAULT_LEASE_MS): a dead consumer's job is recovered about this long after it died. */
  leaseMs?: number;
  /** How often an idle consumer polls for jobs (DEFAULT_POLL_MS). */
  pollMs?: number;
  /** The id this consumer writes on the jobs it claims; unique per queue by default (host, pid, random). */
  workerId?: string;
}

/** A running job of this consumer: how to abort it, when it ends, and until when its lease holds (ms). */
interface RunningJob {
  controller: AbortController;
  done: Promise<void>;
  leaseUntil: number;
}

/**
 * A queue kept in the `generations` table, safe for several processes on one
 * database: a job is queued while it is `generating` with no `started_at`,
 * running once a consumer has claimed it. A claim is one conditional UPDATE
 * that also writes the consumer's `worker_id` and a lease (`lease_expires_at`),
 * which the consumer renews every third of the lease while the job runs. Only a
 * job whose lease lapsed (its consumer died or lost the database) is recovered:
 * at start and by a sweep every third of the lease, in any live process. A
 * consumer that cannot renew aborts its job before the lease lapses, and one
 * that finds its lease taken aborts at once, so no job runs in two places.
 *
 * Wake-up: enqueue wakes this process's consumer and, on PostgreSQL, sends
 * `NOTIFY keyframe_jobs`, which every consumer hears on the change feed's
 * connection (src/db/change-feed.ts); besides, an idle consumer polls every
 * `pollMs`, which is how SQLite's other processes (and a consumer whose feed
 * is down) learn of new jobs.
 */
export class InProcessQueue implements JobProducer, JobConsumer {
  readonly workerId: string;
  private readonly leaseMs: number;
  private readonly pollMs: number;
  private readonly postgres: boolean;
  private handler: JobHandler | null = null;
  private readonly running = new Map<string, RunningJob>();
  private readonly pumper = new CoalescingPump(() => this.pump(), () => !this.stopped && this.handler !== null);
  private stopped = false;
  private heartbeat: NodeJS.Timeout | null = null;
  private poller: NodeJS.Timeout | null = null;
  private beating: Promise<void> | null = null;
  private unlisten: (() => void) | null = null;
  /** Jobs claimed after stop() began, never launched: stop() hands them back with the running ones. */
  private readonly lateClaims: string[] = [];
  /** Milliseconds of the last `started_at` this process wrote (see startTime). */
  private lastStart = 0;

  constructor(
    private readonly db: Db,
    private readonly options: InProcessQueueOptions,
  ) {
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.pollMs = options.pollMs ?? DEFAULT_POLL_MS;
    this.workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
    this.postgres = dialectOf(db) === 'postgres';
  }

  async enqueue(_jobId: string): Promise<void> {
    // The row is the queue entry: look for work here, and tell the other processes.
    this.wake();
    await this.announce();
  }

  /** Nothing to release: the producer side is the database pool, which the caller owns. */
  async close(): Promise<void> {}

  async start(handler: JobHandler): Promise<void> {
    this.handler = handler;
    this.stopped = false;
    await this.recover();
    this.unlisten = listenForJobs(this.db, () => this.wake());
    // Ref'd on purpose: a started consumer keeps its process alive until stop().
    this.heartbeat = setInterval(() => this.beat(), Math.max(1, Math.floor(this.leaseMs / 3)));
    this.poller = setInterval(() => this.wake(), this.pollMs);
    this.wake();
  }

  /**
   * Stops taking jobs, aborts the running ones and hands them back: they are
   * queued again at once (no `started_at`, no lease) and their claim is not
   * counted as an attempt (`attempts` goes back down), so a graceful stop never
   * brings a job nearer to failing. Other consumers are told (NOTIFY).
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.poller) clearInterval(this.poller);
    this.poller = null;
    this.unlisten?.();
    this.unlisten = null;
    // A claim in flight finishes; a job it claimed after the stop is not launched but handed back below.
    await this.pumper.idle();
    const mine = [...this.running.keys(), ...this.lateClaims.splice(0)];
    for (const { controller } of this.running.values()) controller.abort(new Error('server stopping'));
    // Leases are still renewed while the aborted jobs settle.
    await Promise.allSettled([...this.running.values()].map((r) => r.done));
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    await this.beating;
    if (mine.length === 0) return;
    // Only what this stop aborted, and only if still ours (a job whose lease was taken over is not).
    const handedBack = await this.db
      .updateTable('generations')
      .set((eb) => ({ started_at: null, worker_id: null, lease_expires_at: null, attempts: eb('attempts', '-', 1) }))
      .where('id', 'in', mine)
      .where('worker_id', '=', this.workerId)
      .where('status', '=', 'generating')
      .executeTakeFirst()
      .catch((err) => {
        // Their leases lapse instead, and another consumer recovers them (as an attempt).
        this.options.onError(err, '(hand-back)');
        return undefined;
      });
    if (handedBack && handedBack.numUpdatedRows > 0n) await this.announce();
  }

  /** Tells consumers in other processes that there is work (PostgreSQL; elsewhere they poll). Never throws. */
  private async announce(): Promise<void> {
    if (!this.postgres) return;
    try {
      await sql`select pg_notify(${JOBS_CHANNEL}, '')`.execute(this.db);
    } catch (err) {
      // The row is queued all the same; consumers find it by polling.
      this.options.onError(err, '(notify)');
    }
  }

  /** Every third of the lease: renew this consumer's leases, then recover lapsed jobs of any consumer. */
  private beat(): void {
    if (this.beating) return;
    this.beating = (async () => {
      await this.renew();
      if (!this.stopped && (await this.recover())) this.wake();
    })()
      .catch((err) => this.options.onError(err, '(lease sweep)'))
      .finally(() => {
        this.beating = null;
      });
  }

  /**
   * Extends the lease of every running job of this consumer. A job the UPDATE
   * does not return is no longer ours (it settled, or its lease lapsed and
   * another consumer took it over): abort it. When renewing fails, abort each
   * job whose lease would lapse before the next renewal, so that it stops
   * here before another consumer may recover it.
   */
  private async renew(): Promise<void> {
    const ids = [...this.running.keys()];
    if (ids.length === 0) return;
    const at = Date.now();
    let held: Set<string>;
    try {
      const rows = await this.db
        .updateTable('generations')
        .set({ lease_expires_at: iso(at + this.leaseMs) })
        .where('id', 'in', ids)
        .where('worker_id', '=', this.workerId)
        .where('status', '=', 'generating')
        .returning('id')
        .execute();
      held = new Set(rows.map((r) => r.id));
    } catch (err) {
      this.options.onError(err, '(lease renewal)');
      const deadline = Date.now() + this.leaseMs / 3;
      for (const [id, job] of this.running) {
        if (job.leaseUntil <= deadline) job.controller.abort(new Error(`lease on job ${id} could not be renewed`));
      }
      return;
    }
    for (const id of ids) {
      const job = this.running.get(id);
      if (!job) continue;
      if (held.has(id)) job.leaseUntil = at + this.leaseMs;
      else job.controller.abort(new Error(`lease on job ${id} lost`));
    }
  }

  /**
   * Jobs whose lease lapsed (their consumer died, or a process of an earlier
   * version left them running): run them again, or fail them once they used
   * their attempts. Each is first taken over with one conditional UPDATE, so
   * that of several sweeping processes one acts, and a consumer that renewed
   * in the meantime keeps its job. Returns whether any job was queued again.
   */
  private async recover(): Promise<boolean> {
    const handler = this.handler!;
    const now = iso(Date.now());
    const lapsed = await this.db
      .selectFrom('generations')
      .select('id')
      .where('status', '=', 'generating')
      .where('lease_expires_at', '<', now)
      .execute();
    let requeued = false;
    for (const { id } of lapsed) {
      const taken = await this.db
        .updateTable('generations')
        .set({ worker_id: this.workerId, lease_expires_at: iso(Date.now() + this.leaseMs) })
        .where('id', '=', id)
        .where('status', '=', 'generating')
        .where('lease_expires_at', '<', now)
        .returning('attempts')
        .executeTakeFirst();
      if (!taken) continue;
      if (taken.attempts >= this.options.maxAttempts) {
        // Should this fail, the lease taken here lapses and a later sweep tries again.
        await handler.abandon(id, `Generation interrupted by a server restart ${taken.attempts} time(s); gave up`);
      } else {
        await this.db
          .updateTable('generations')
          .set({ started_at: null, worker_id: null, lease_expires_at: null })
          .where('id', '=', id)
          .where('worker_id', '=', this.workerId)
          .where('status', '=', 'generating')
          .execute();
        requeued = true;
      }
    }
    return requeued;
  }

  private wake(): void {
    this.pumper.wake();
  }

  private async pump(): Promise<void> {
    while (!this.stopped && this.running.size < this.options.concurrency) {
      const claimed = await this.claimNext().catch((err) => {
        this.options.onError(err, '(claim)');
        return undefined;
      });
      if (claimed === undefined) return;
      if (this.stopped) {
        this.lateClaims.push(claimed.id);
        return;
      }
      this.launch(claimed.id, claimed.leaseUntil);
    }
  }

  /**
   * Claims the next job, fairly: from the user served least recently (the
   * latest `started_at` among their generations; never-served users first,
   * then the user whose oldest queued job is oldest), that user's oldest
   * queued job. So one user's backlog waits behind every other user's next
   * job instead of in front of it. Choosing is one SELECT (`nextJobQuery`,
   * index ranges only: see the plan in test/queue/fair-queue.test.ts); the
   * claim is still one conditional UPDATE, so two processes never run one job.
   */
  private async claimNext(): Promise<{ id: string; leaseUntil: number } | undefined> {
    for (;;) {
      const next = await nextJobQuery(this.db).executeTakeFirst();
      if (!next) return undefined;
      const leaseUntil = Date.now() + this.leaseMs;
      const claimed = await this.db
        .updateTable('generations')
        .set((eb) => ({
          started_at: this.startTime(),
          attempts: eb('attempts', '+', 1),
          worker_id: this.workerId,
          lease_expires_at: iso(leaseUntil),
        }))
        .where('id', '=', next.id)
        .where('status', '=', 'generating')
        .where('started_at', 'is', null)
        .executeTakeFirst();
      if (claimed.numUpdatedRows > 0n) return { id: next.id, leaseUntil };
    }
  }

  /**
   * The claim's `started_at`: now, but strictly after this process's previous
   * claim, so that two users served in the same millisecond are still told
   * apart by the fair order (a tie would fall back to queue age and could
   * serve one user twice in a row).
   */
  private startTime(): string {
    this.lastStart = Math.max(Date.now(), this.lastStart + 1);
    return new Date(this.lastStart).toISOString();
  }

  private launch(id: string, leaseUntil: number): void {
    const handler = this.handler!;
    const controller = new AbortController();
    const done = handler
      .run(id, controller.signal)
      .catch(async (err) => {
        // Aborted (stopping, or the lease lost): not a failure of the job. stop() hands it back; a lost job is another consumer's.
        if (controller.signal.aborted) return;
        this.options.onError(err, id);
        await handler.abandon(id, 'Generation failed: internal error').catch((e) => this.options.onError(e, id));
      })
      .finally(() => {
        this.running.delete(id);
        this.wake();
      });
    this.running.set(id, { controller, done, leaseUntil });
  }
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Calls `wake` on every NOTIFY keyframe_jobs (PostgreSQL's change feed); a database without a feed just polls. */
function listenForJobs(db: Db, wake: () => void): () => void {
  let feed;
  try {
    feed = changeFeedOf(db);
  } catch {
    return () => {};
  }
  return feed.listen(JOBS_CHANNEL, wake);
}

/**
 * The job the fair queue runs next. The inner query groups the queued jobs by
 * user (index `generations_queue`: status, started_at, user_id, created_at),
 * looks up each user's latest start (index `generations_user_started`, a max
 * probe) and keeps the least recently served user; the outer one takes that
 * user's oldest queued job (`generations_queue` again, in its order). Portable SQL:
 * `coalesce` puts never-served users first on SQLite and PostgreSQL alike
 * (ISO timestamps sort after the empty string), and ORDER BY names only
 * output columns.
 */
export function nextJobQuery(db: Db) {
  const leastRecentlyServed = db
    .selectFrom('generations as q')
    .select('q.user_id')
    .select((eb) => eb.fn.min('q.created_at').as('first_queued'))
    .select((eb) =>
      eb.fn
        .coalesce(
          eb.selectFrom('generations as s').select((e) => e.fn.max('s.started_at').as('m')).whereRef('s.user_id', '=', 'q.user_id'),
          sql.lit(''),
        )
        .as('last_served'),
    )
    .where('q.status', '=', 'generating')
    .where('q.started_at', 'is', null)
    .groupBy('q.user_id')
    .orderBy('last_served')
    .orderBy('first_queued')
    .orderBy('q.user_id')
    .limit(1);
  return db
    .selectFrom('generations')
    .select('id')
    .where('user_id', '=', db.selectFrom(leastRecentlyServed.as('u')).select('u.user_id'))
    .where('status', '=', 'generating')
    .where('started_at', 'is', null)
    .orderBy('created_at')
    .orderBy('id')
    .limit(1);
}
