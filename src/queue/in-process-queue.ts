import { sql } from 'kysely';
import type { Db } from '../db/database.js';
import type { JobHandler, JobQueue } from './job-queue.js';

export interface InProcessQueueOptions {
  /** Jobs run at once. */
  concurrency: number;
  /** Starts of one job after which a restart gives up on it. */
  maxAttempts: number;
  /** Where unexpected handler failures are reported. */
  onError: (err: unknown, jobId: string) => void;
}

/**
 * A queue inside the server process, kept in the `generations` table: a job
 * is queued while it is `generating` with no `started_at`, running once a
 * worker has claimed it. Claims are one conditional UPDATE, so two processes
 * on one database never run the same job twice.
 */
export class InProcessQueue implements JobQueue {
  private handler: JobHandler | null = null;
  private readonly running = new Map<string, { controller: AbortController; done: Promise<void> }>();
  private pumping: Promise<void> | null = null;
  private pumpAgain = false;
  private stopped = false;
  /** Milliseconds of the last `started_at` this process wrote (see startTime). */
  private lastStart = 0;

  constructor(
    private readonly db: Db,
    private readonly options: InProcessQueueOptions,
  ) {}

  async enqueue(_jobId: string): Promise<void> {
    // The row is the queue entry; all there is to do is look for work.
    this.wake();
  }

  async start(handler: JobHandler): Promise<void> {
    this.handler = handler;
    this.stopped = false;
    await this.recover(handler);
    this.wake();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const { controller } of this.running.values()) controller.abort(new Error('server stopping'));
    await Promise.allSettled([...this.running.values()].map((r) => r.done));
    await this.pumping;
  }

  /** Jobs a killed process left running: run them again, or fail them once they used their attempts. */
  private async recover(handler: JobHandler): Promise<void> {
    const interrupted = await this.db
      .selectFrom('generations')
      .select(['id', 'attempts'])
      .where('status', '=', 'generating')
      .where('started_at', 'is not', null)
      .execute();
    for (const job of interrupted) {
      if (job.attempts >= this.options.maxAttempts) {
        await handler.abandon(job.id, `Generation interrupted by a server restart ${job.attempts} time(s); gave up`);
      } else {
        await this.db.updateTable('generations').set({ started_at: null }).where('id', '=', job.id).where('status', '=', 'generating').execute();
      }
    }
  }

  private wake(): void {
    if (this.stopped || !this.handler) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = this.pump().finally(() => {
      this.pumping = null;
      if (this.pumpAgain) {
        this.pumpAgain = false;
        this.wake();
      }
    });
  }

  private async pump(): Promise<void> {
    while (!this.stopped && this.running.size < this.options.concurrency) {
      const id = await this.claimNext().catch((err) => {
        this.options.onError(err, '(claim)');
        return undefined;
      });
      if (id === undefined) return;
      this.launch(id);
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
  private async claimNext(): Promise<string | undefined> {
    for (;;) {
      const next = await nextJobQuery(this.db).executeTakeFirst();
      if (!next) return undefined;
      const claimed = await this.db
        .updateTable('generations')
        .set((eb) => ({ started_at: this.startTime(), attempts: eb('attempts', '+', 1) }))
        .where('id', '=', next.id)
        .where('status', '=', 'generating')
        .where('started_at', 'is', null)
        .executeTakeFirst();
      if (claimed.numUpdatedRows > 0n) return next.id;
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

  private launch(id: string): void {
    const handler = this.handler!;
    const controller = new AbortController();
    const done = handler
      .run(id, controller.signal)
      .catch(async (err) => {
        this.options.onError(err, id);
        // Stopping leaves the job running on purpose: the next start retries it.
        if (!controller.signal.aborted) await handler.abandon(id, 'Generation failed: internal error').catch((e) => this.options.onError(e, id));
      })
      .finally(() => {
        this.running.delete(id);
        this.wake();
      });
    this.running.set(id, { controller, done });
  }
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
