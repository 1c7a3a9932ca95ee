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
 * The generation queue. The in-process implementation keeps the queue in the
 * database; a Redis-backed one can implement the same interface later.
 */
export interface JobQueue {
  /** Makes a persisted, not yet started job eligible to run. */
  enqueue(jobId: string): Promise<void>;
  /** Recovers jobs a previous process left running, then starts taking jobs. */
  start(handler: JobHandler): Promise<void>;
  /** Stops taking jobs and aborts the running ones, which a later start retries. */
  stop(): Promise<void>;
}
