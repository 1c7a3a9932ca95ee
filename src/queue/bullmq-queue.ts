import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { DelayedError, PRIORITY_LIMIT, Queue, Worker, type Job } from 'bullmq';
import type { Db } from '../db/database.js';
import type { RedisHandle } from '../redis/connection.js';
import { handBackRow, markRunning, queuedAhead, unsettledRows, type RowCursor } from './bullmq-rows.js';
import type { JobConsumer, JobHandler, JobProducer } from './job-queue.js';

/** The BullMQ queue name of generations (keys `<prefix>:generations:*`). */
export const GENERATIONS_QUEUE = 'generations';

/** BullMQ's failure of a job that stalled more than `maxStalledCount` times (its deferred failure). */
const STALLED_TOO_OFTEN = 'job stalled more than allowable limit';
const INTERNAL_ERROR = 'Generation failed: internal error';
/** A row younger than this may still be between its INSERT and its enqueue: reconcile leaves it alone. */
const RECONCILE_MIN_AGE_MS = 5_000;
/** Rows one reconcile pass looks at; the next pass goes on after the last of them. */
const RECONCILE_BATCH = 200;
/** How long the reconcile lock outlives a holder that died mid-pass. */
const RECONCILE_LOCK_MS = 60_000;
/** Failed BullMQ jobs are kept this long, so that reconcile can read why a job failed. */
const FAILED_KEPT_SECONDS = 86_400;
/**
 * A running job whose lock renewal was not confirmed for this fraction of the lease is aborted
 * (`watchdog`): BullMQ renews every quarter to half lease, so only a renewal that cannot reach
 * Redis leaves it this long, and the job stops before its lock can lapse for another consumer.
 */
const UNCONFIRMED_LOCK_FRACTION = 0.75;
/** How long a job waits when its row could not be read, before a consumer tries it again. */
const RETRY_DELAY_MS = 1_000;
/** Deletes the reconcile lock only if it is still the caller's. */
const RELEASE_LOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

export interface BullmqQueueOptions {
  /** The process's Redis (src/redis/connection.ts): BullMQ runs on its client (duplicating it for blocking reads) under its prefix. */
  redis: RedisHandle;
  /** Jobs run at once by this consumer. */
  concurrency: number;
  /** Starts of one job: a job whose consumer died is run again until it has started this many times. */
  maxAttempts: number;
  /** BullMQ's lock on a running job (renewed while it runs); a dead consumer's job runs again about this long (and a third) after it died. */
  leaseMs: number;
  /** Where unexpected failures are reported (handler throws, Redis and database errors of the background work). */
  onError: (err: unknown, jobId: string) => void;
  /** Told what a reconcile pass repaired. */
  log?: (message: string, details: Record<string, unknown>) => void;
  /** The id this consumer writes on the rows it runs; unique per queue by default (host, pid, random). */
  workerId?: string;
  /** How often a started consumer reconciles rows and Redis (default: `leaseMs`). */
  reconcileMs?: number;
}

/** A job this consumer is running: how to abort it, why it was aborted, and the timer that aborts it if its lock goes unconfirmed. */
interface RunningJob {
  controller: AbortController;
  abortedFor: 'stop' | 'lost' | null;
  watchdog: NodeJS.Timeout;
}

/**
 * The generation queue on BullMQ (Redis), for a cluster: the API enqueues, any number of
 * worker processes consume. The `generations` row stays the truth of a job; the BullMQ job
 * (id = generation id, data `{}`) only says that it should run. So:
 *
 * 1. Enqueue is idempotent (BullMQ ignores a second add of a job id) and Redis errors reject,
 *    leaving the row queued for reconcile. `attempts: 1`: the handler settles rows itself, so a
 *    BullMQ retry could only run a settled job again; a handler that throws (not because it was
 *    aborted) gets its row abandoned with "internal error", as InProcessQueue does, and the
 *    BullMQ job fails. Completed jobs are removed (nothing to learn from them); failed ones are
 *    kept a day so that reconcile can read why.
 * 2. Fairness, approximated: the database queue serves the least recently served user first;
 *    BullMQ has no per-user groups, only priorities (lower first, FIFO within one). A job's
 *    priority is 1 + the number of its user's queued generations created before it (one indexed
 *    count at enqueue), so the n-th job of every user's backlog shares priority n: a 200-job
 *    backlog interleaves with other users' first jobs instead of going before them. It is fixed
 *    at enqueue (a user served a lot lately is not pushed back, unlike the database queue), and
 *    never 0: BullMQ runs unprioritized jobs before all prioritized ones.
 * 3. A job that starts marks its row running (`started_at`, `attempts + 1`, this consumer's
 *    `worker_id`) in one UPDATE conditional on `status = 'generating'`; no row updated means it
 *    is settled or gone, and the BullMQ job completes without running. The handler refuses to
 *    settle a row whose `worker_id` changed since it read it, so a run that lost its job cannot
 *    overwrite the run that replaced it.
 * 4. Never two runs at once: BullMQ's lock (`lockDuration` = `leaseMs`) holds a running job; when
 *    renewing it fails (`lockRenewalFailed`: it lapsed, or the job is gone or is another's), or
 *    its renewal goes unconfirmed for three quarters of the lease (Redis unreachable), the job's
 *    signal is aborted before the lock can lapse for another consumer. Such a job is walked away
 *    from, untouched: BullMQ's stalled check gives it to another consumer, as a dead one's.
 * 5. A consumer that died (SIGKILL) leaves its jobs locked until the lock lapses; the stalled
 *    check of any live consumer (every third of the lease) moves them back to wait, at most
 *    `maxAttempts - 1` times (`maxStalledCount`), so a job starts at most `maxAttempts` times.
 *    Past that BullMQ fails the job, and its row is failed ("interrupted n time(s)") from the
 *    `failed` event of the consumer that saw it, else by reconcile.
 * 6. Reconcile: rows and Redis can drift (an enqueue that failed, keys lost, a `failed` event
 *    nobody heard). Every `reconcileMs`, in every started consumer, one at a time (a Redis lock),
 *    a bounded batch of unsettled rows older than a few seconds is compared with BullMQ: a job
 *    Redis does not know (or completed while its row is unsettled) is enqueued again, a failed
 *    one has its row failed and is removed. The next pass goes on where this one stopped.
 * 7. stop() hands running jobs back: their signal is aborted ("server stopping"), and each
 *    processor queues its row again without counting the start, then moves the BullMQ job back
 *    (through `delayed`, due at once: not failed, no attempt or stall counted), where another
 *    consumer takes it; then the Worker closes. close() closes the producer's Queue. Neither closes the shared Redis client.
 * 8. No BullMQ time limit: the job's time limit is the handler's (GenerationWorker).
 */
export class BullmqQueue implements JobProducer, JobConsumer {
  readonly workerId: string;
  private readonly queue: Queue;
  private readonly reconcileMs: number;
  private readonly lockKey: string;
  private handler: JobHandler | null = null;
  private worker: Worker | null = null;
  private stopping: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private readonly running = new Map<string, RunningJob>();
  /** Abandons started from `failed` events: stop() waits for them. */
  private readonly pending = new Set<Promise<void>>();
  private reconciler: NodeJS.Timeout | null = null;
  private reconciling: Promise<void> | null = null;
  private cursor: RowCursor | null = null;

  constructor(
    private readonly db: Db,
    private readonly options: BullmqQueueOptions,
  ) {
    this.workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
    this.reconcileMs = options.reconcileMs ?? options.leaseMs;
    // Outside the queue's own keys (`<prefix>:generations:<job id>`), which a job id could collide with.
    this.lockKey = `${options.redis.prefix}:reconcile-lock:${GENERATIONS_QUEUE}`;
    this.queue = new Queue(GENERATIONS_QUEUE, { connection: options.redis.client, prefix: options.redis.prefix });
    this.queue.on('error', (err) => options.onError(err, '(bullmq queue)'));
  }

  async enqueue(jobId: string): Promise<void> {
    const priority = Math.min(1 + (await queuedAhead(this.db, jobId)), PRIORITY_LIMIT);
    await this.queue.add('generation', {}, { jobId, priority, attempts: 1, removeOnComplete: true, removeOnFail: { age: FAILED_KEPT_SECONDS } });
  }

  async close(): Promise<void> {
    await (this.closing ??= this.queue.close());
  }

  async start(handler: JobHandler): Promise<void> {
    if (this.worker) throw new Error('BullmqQueue: already started');
    this.handler = handler;
    this.stopping = null;
    const worker = new Worker(GENERATIONS_QUEUE, (job, token) => this.process(job, token), {
      connection: this.options.redis.client,
      prefix: this.options.redis.prefix,
      name: this.workerId,
      autorun: false,
      concurrency: this.options.concurrency,
      lockDuration: this.options.leaseMs,
      stalledInterval: Math.max(1, Math.floor(this.options.leaseMs / 3)),
      maxStalledCount: Math.max(0, this.options.maxAttempts - 1),
    });
    worker.on('error', (err) => this.options.onError(err, '(bullmq worker)'));
    worker.on('lockRenewalFailed', (ids) => ids.forEach((id) => this.abortRun(id, 'lost')));
    worker.on('locksRenewed', ({ jobIds }) => jobIds.forEach((id) => this.renewed(id)));
    worker.on('failed', (job, err) => {
      if (job?.id && err.message === STALLED_TOO_OFTEN) this.background(handler.abandon(job.id, interrupted(job.stalledCounter)), job.id);
    });
    this.worker = worker;
    try {
      await worker.waitUntilReady();
    } catch (err) {
      this.worker = null;
      await worker.close(true);
      throw err;
    }
    worker.run().catch((err) => this.options.onError(err, '(bullmq worker)'));
    // A first pass now: rows that Redis missed while no consumer ran.
    this.reconcileInBackground();
    await this.reconciling;
    // Ref'd on purpose: a started consumer keeps its process alive until stop().
    this.reconciler = setInterval(() => this.reconcileInBackground(), this.reconcileMs);
  }

  async stop(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    await (this.stopping ??= (async () => {
      if (this.reconciler) clearInterval(this.reconciler);
      this.reconciler = null;
      for (const id of this.running.keys()) this.abortRun(id, 'stop');
      // Waits for every processor, each handing its job back (see `process`); one fetched meanwhile is handed back unstarted.
      await worker.close();
      await this.reconciling;
      await Promise.allSettled(this.pending);
      this.worker = null;
    })());
  }

  /** One reconcile pass (also run periodically by a started consumer); a pass already under way elsewhere makes this one a no-op. */
  async reconcile(): Promise<{ requeued: number; abandoned: number }> {
    const client = this.options.redis.client;
    const token = randomBytes(8).toString('hex');
    if ((await client.set(this.lockKey, token, 'PX', RECONCILE_LOCK_MS, 'NX')) !== 'OK') return { requeued: 0, abandoned: 0 };
    try {
      return await this.reconcileBatch();
    } finally {
      await client.eval(RELEASE_LOCK, 1, this.lockKey, token).catch((err) => this.options.onError(err, '(reconcile lock)'));
    }
  }

  private async reconcileBatch(): Promise<{ requeued: number; abandoned: number }> {
    const cutoff = new Date(Date.now() - RECONCILE_MIN_AGE_MS).toISOString();
    const rows = await unsettledRows(this.db, cutoff, this.cursor, RECONCILE_BATCH);
    this.cursor = rows.length < RECONCILE_BATCH ? null : rows.at(-1)!;
    const states = await Promise.all(rows.map((row) => this.queue.getJobState(row.id)));
    let requeued = 0;
    let abandoned = 0;
    for (const [i, { id }] of rows.entries()) {
      const state = states[i];
      if (state === 'unknown' || state === 'completed') {
        // A completed job would make the add a no-op: remove it first. (Its row may have settled since it was read: then the job just completes.)
        if (state === 'completed') await this.queue.remove(id);
        await this.enqueue(id);
        requeued += 1;
      } else if (state === 'failed' && this.handler) {
        const job = await this.queue.getJob(id);
        await this.handler.abandon(id, job?.failedReason === STALLED_TOO_OFTEN ? interrupted(job.stalledCounter) : INTERNAL_ERROR);
        await this.queue.remove(id);
        abandoned += 1;
      }
    }
    if (requeued + abandoned > 0) this.options.log?.('generation queue reconciled with its rows', { requeued, abandoned });
    return { requeued, abandoned };
  }

  private reconcileInBackground(): void {
    if (this.reconciling) return;
    this.reconciling = this.reconcile()
      .then(
        () => undefined,
        (err) => this.options.onError(err, '(reconcile)'),
      )
      .finally(() => {
        this.reconciling = null;
      });
  }

  /** The Worker's processor: marks the row running, runs the handler, and on an abort hands the job back or walks away. */
  private async process(job: Job, token: string | undefined): Promise<void> {
    const id = job.id!;
    if (this.stopping) return this.handBack(job, token, false);
    let marked: boolean;
    try {
      marked = await markRunning(this.db, id, this.workerId);
    } catch (err) {
      // The database is unreachable: try again a little later, neither failing the job nor counting a start.
      this.options.onError(err, id);
      return this.handBack(job, token, false, RETRY_DELAY_MS);
    }
    if (!marked) return;
    if (this.stopping) return this.handBack(job, token, true);
    // The lock was taken when the job moved to active (processedOn), a little before it got here.
    const run: RunningJob = { controller: new AbortController(), abortedFor: null, watchdog: this.watchdog(id, job.processedOn ?? Date.now()) };
    this.running.set(id, run);
    let aborted = false;
    try {
      await this.handler!.run(id, run.controller.signal);
    } catch (err) {
      if (!run.abortedFor) {
        this.options.onError(err, id);
        await this.handler!.abandon(id, INTERNAL_ERROR).catch((e) => this.options.onError(e, id));
        throw err;
      }
      aborted = true;
    } finally {
      clearTimeout(run.watchdog);
      this.running.delete(id);
    }
    // Lost: the job is, or will be, another consumer's; leave it as BullMQ has it (a DelayedError tells BullMQ the processor moved the job itself).
    if (run.abortedFor === 'lost') throw new DelayedError();
    if (aborted) return this.handBack(job, token, true);
  }

  /**
   * Queues a job of this consumer again without counting its start: first its row (only if still
   * ours), then the BullMQ job (only with our lock), so that the consumer taking it next finds the
   * row queued. The job goes through `delayed` (due after `delayMs`), not straight back to wait:
   * BullMQ's move to wait does not wake idle consumers for a prioritized job, the promotion of a
   * due delayed job does. Neither counts an attempt or a stall.
   */
  private async handBack(job: Job, token: string | undefined, rowToo: boolean, delayMs = 0): Promise<never> {
    const id = job.id!;
    try {
      if (rowToo) await handBackRow(this.db, id, this.workerId);
    } catch (err) {
      // The next start then counts as an attempt; the job is handed back all the same.
      this.options.onError(err, id);
    }
    try {
      await job.moveToDelayed(Date.now() + delayMs, token);
    } catch (err) {
      // Its lock lapses and the stalled check runs it again, as a dead consumer's job.
      this.options.onError(err, id);
    }
    throw new DelayedError();
  }

  /** The timer that aborts a running job whose lock was last confirmed at `confirmedAt` and not since, before the lock can lapse. */
  private watchdog(id: string, confirmedAt: number): NodeJS.Timeout {
    const deadline = confirmedAt + this.options.leaseMs * UNCONFIRMED_LOCK_FRACTION;
    return setTimeout(() => this.abortRun(id, 'lost'), Math.max(0, deadline - Date.now()));
  }

  private renewed(id: string): void {
    const run = this.running.get(id);
    if (!run || run.abortedFor) return;
    clearTimeout(run.watchdog);
    run.watchdog = this.watchdog(id, Date.now());
  }

  private abortRun(id: string, why: 'stop' | 'lost'): void {
    const run = this.running.get(id);
    if (!run || run.abortedFor) return;
    run.abortedFor = why;
    clearTimeout(run.watchdog);
    run.controller.abort(new Error(why === 'stop' ? 'server stopping' : `lock on job ${id} lost`));
  }

  private background(work: Promise<void>, id: string): void {
    const tracked = work.catch((err) => this.options.onError(err, id)).finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
  }
}

/** The error of a row whose job BullMQ gave up on after its consumers died `n` times. */
function interrupted(n: number): string {
  return `Generation interrupted ${n} time(s) (its worker stopped); gave up`;
}
