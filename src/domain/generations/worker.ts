import type { Db } from '../../db/database.js';
import type { GenerationsTable } from '../../db/schema.js';
import type { JobHandler } from '../../queue/job-queue.js';
import { generationVideoKey } from '../object-keys.js';
import { NO_TELEMETRY, type Telemetry } from '../telemetry.js';
import type { GenerationJob, GenerationParams } from './job.js';
import type { ModelRegistry } from './model-registry.js';
import { RunnerFailure, type Runner } from './runner.js';
import { pendingDelivery, type WebhookDispatch } from './webhooks.js';

export const TIMED_OUT = 'Generation timed out';

export interface WorkerOptions {
  /** Time limit of one job. */
  timeoutSeconds: number;
  /** The runner of a model's registry entry. */
  runnerFor: (runnerType: 'local' | 'http') => Runner;
  /** Where failures with details not fit for clients are logged. */
  log: (err: unknown, generationId: string) => void;
}

/**
 * Runs one generation: hands the job to its model's runner under the time
 * limit, records the outcome and queues its webhook delivery. Called by the queue.
 */
export class GenerationWorker implements JobHandler {
  /** Counts settled generations and their time from creation (src/domain/telemetry.ts). */
  private readonly telemetry: Telemetry;

  constructor(
    private readonly db: Db,
    private readonly registry: ModelRegistry,
    private readonly webhooks: WebhookDispatch,
    private readonly options: WorkerOptions & { telemetry?: Telemetry },
  ) {
    this.telemetry = options.telemetry ?? NO_TELEMETRY;
  }

  async run(generationId: string, stop: AbortSignal): Promise<void> {
    const row = await this.db.selectFrom('generations').selectAll().where('id', '=', generationId).executeTakeFirst();
    if (!row || row.status !== 'generating') return;
    const model = this.registry.get(row.model_name);
    if (!model) return this.finish(row, { error: `Model ${row.model_name} is no longer configured on this server` });
    // No check of the references here: a check before the runner reads would race a
    // replay of an upload URL. Runners read each one pinned to its verified ETag instead.
    const params = JSON.parse(row.params) as GenerationParams;

    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(new RunnerFailure(TIMED_OUT)), this.options.timeoutSeconds * 1000);
    const signal = AbortSignal.any([stop, timeout.signal]);
    const job: GenerationJob = {
      id: row.id,
      userId: row.user_id,
      modelName: row.model_name,
      prompt: row.prompt,
      params,
      videoKey: generationVideoKey(row.user_id, row.id),
      deadline: new Date(Date.now() + this.options.timeoutSeconds * 1000),
    };
    try {
      const video = await abortable(this.options.runnerFor(model.runner.type).run(job, signal), signal);
      await this.finish(row, { videoKey: video.key });
    } catch (err) {
      // Shutdown: the queue hands the job back (it is not failed), and a worker runs it again.
      if (stop.aborted) throw err;
      if (timeout.signal.aborted) return this.finish(row, { error: TIMED_OUT });
      if (!(err instanceof RunnerFailure)) this.options.log(err, row.id);
      await this.finish(row, { error: err instanceof RunnerFailure ? err.message : 'Generation failed: internal error' });
    } finally {
      clearTimeout(timer);
    }
  }

  async abandon(generationId: string, reason: string): Promise<void> {
    const row = await this.db.selectFrom('generations').selectAll().where('id', '=', generationId).executeTakeFirst();
    // The queue abandons only jobs that will not run again (it holds their claim): no fence on worker_id.
    if (row && row.status === 'generating') await this.finish(row, { error: reason }, false);
  }

  /**
   * Records the outcome once (a row already settled stays as it is) and, with a
   * `webhook_url`, its delivery in the same transaction: a settled generation
   * never lacks its webhook, whenever the process dies. `fenced`: only while
   * `worker_id` is still the one `row` was read with, so that a run whose claim
   * lapsed and was taken over can never overwrite the outcome of the run that
   * took it.
   */
  private async finish(row: GenerationsTable, outcome: Outcome, fenced = true): Promise<void> {
    const now = new Date().toISOString();
    const changes =
      'videoKey' in outcome
        ? { status: 'completed' as const, video_key: outcome.videoKey, completed_at: now, error: null }
        : { status: 'failed' as const, error: outcome.error, completed_at: now };
    const { settled, queued } = await this.db.transaction().execute(async (trx) => {
      let update = trx.updateTable('generations').set(changes).where('id', '=', row.id).where('status', '=', 'generating');
      if (fenced) update = update.where('worker_id', row.worker_id === null ? 'is' : '=', row.worker_id);
      const result = await update.executeTakeFirst();
      if (result.numUpdatedRows === 0n) return { settled: false, queued: false };
      if (!row.webhook_url) return { settled: true, queued: false };
      await trx.insertInto('webhook_deliveries').values(pendingDelivery(row.id, now)).execute();
      return { settled: true, queued: true };
    });
    if (settled) {
      // The label is a model of the registry (bounded); a row naming one no longer configured is counted under one name.
      const model = this.registry.get(row.model_name) ? row.model_name : 'unconfigured';
      this.telemetry.generationSettled(changes.status, model, (Date.parse(now) - Date.parse(row.created_at)) / 1000);
    }
    if (queued) await this.webhooks.queued();
  }
}

/** What a run came to: the finished video's key, or an error fit for the client. */
type Outcome = { videoKey: string } | { error: string };

/**
 * Rejects as soon as `signal` aborts, even if the runner is slow to notice. `work` always gets a
 * handler: a runner handed an already aborted signal (a stop during the row read) rejects with
 * its reason, and an unhandled rejection would end the process.
 */
export function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
