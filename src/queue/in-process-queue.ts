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

  private async claimNext(): Promise<string | undefined> {
    for (;;) {
      const next = await this.db
        .selectFrom('generations')
        .select('id')
        .where('status', '=', 'generating')
        .where('started_at', 'is', null)
        .orderBy('created_at')
        .orderBy('id')
        .limit(1)
        .executeTakeFirst();
      if (!next) return undefined;
      const claimed = await this.db
        .updateTable('generations')
        .set((eb) => ({ started_at: new Date().toISOString(), attempts: eb('attempts', '+', 1) }))
        .where('id', '=', next.id)
        .where('status', '=', 'generating')
        .where('started_at', 'is', null)
        .executeTakeFirst();
      if (claimed.numUpdatedRows > 0n) return next.id;
    }
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
