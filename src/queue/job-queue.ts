/**
 * What the queue calls for each job. `run` must settle the job itself (mark
 * it completed or failed); if it throws, the queue fails the job through
 * `abandon` so that nothing stays "generating" for ever.
 */
export interface JobHandler {
  run(jobId: string, signal: AbortSignal): Promise<void>;
  /** Marks a job that will not run again as failed, with `reason` as its error. */
  abandon(jobId: string, reason: string): Promise<void>;
}

/**
 * The producer side of the generation queue: what the API uses
 * (src/domain/generations/generations.ts). Cheap: it never waits for a worker.
 */
export interface JobProducer {
  /** Makes a persisted, not yet started job eligible to run, and tells consumers (in any process) there is work. */
  enqueue(jobId: string): Promise<void>;
  /** Releases the producer's connections; queued jobs stay queued. Safe to call twice. */
  close(): Promise<void>;
}

/** The consumer side: what a worker process runs. Several consumers, in several processes, may share one queue. */
export interface JobConsumer {
  /** Recovers jobs whose consumer died (their lease lapsed), then starts taking jobs. */
  start(handler: JobHandler): Promise<void>;
  /** Stops taking jobs, aborts the running ones and hands them back to the queue at once. */
  stop(): Promise<void>;
}

/**
 * The generation queue, both sides. Two implementations, one behaviour
 * (test/queue/support/queue-behaviour.ts runs the same suite on both):
 *
 * - InProcessQueue (in-process-queue.ts): the queue is the `generations` table
 *   itself, claimed with conditional UPDATEs under leases; the default, for one
 *   database and no other moving part.
 * - BullmqQueue (bullmq-queue.ts), with `KEYFRAME_REDIS_URL`: BullMQ on the
 *   cluster's Redis (job id = generation id) dispatches; the row stays the
 *   truth of the job's state. BullMQ's lock and stalled check replace the
 *   leases, a per-user priority approximates the database queue's fair order,
 *   and a periodic reconcile pass repairs any drift between rows and Redis.
 */
export type JobQueue = JobProducer & JobConsumer;
