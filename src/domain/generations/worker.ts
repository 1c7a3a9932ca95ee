import type { Db } from '../../db/database.js';
import type { GenerationsTable } from '../../db/schema.js';
import type { JobHandler } from '../../queue/job-queue.js';
import type { ObjectStore } from '../../storage/object-store.js';
import { generationVideoKey } from '../object-keys.js';
import type { GenerationJob, GenerationParams } from './job.js';
import type { ModelRegistry } from './model-registry.js';
import { RunnerFailure, type Runner } from './runner.js';
import { statusBody } from './status.js';
import type { WebhookDelivery } from './webhooks.js';

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
 * limit, records the outcome and announces it to the webhook. Called by the queue.
 */
export class GenerationWorker implements JobHandler {
  constructor(
    private readonly db: Db,
    private readonly registry: ModelRegistry,
    private readonly store: ObjectStore,
    private readonly webhooks: WebhookDelivery,
    private readonly options: WorkerOptions,
  ) {}

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
    if (row && row.status === 'generating') await this.finish(row, { error: reason });
  }

  /** Records the outcome once (a row already settled stays as it is), then fires the webhook. */
  private async finish(row: GenerationsTable, outcome: { videoKey: string } | { error: string }): Promise<void> {
    const now = new Date().toISOString();
    const changes =
      'videoKey' in outcome
        ? { status: 'completed' as const, video_key: outcome.videoKey, completed_at: now, error: null }
        : { status: 'failed' as const, error: outcome.error, completed_at: now };
    const result = await this.db.updateTable('generations').set(changes).where('id', '=', row.id).where('status', '=', 'generating').executeTakeFirst();
    if (result.numUpdatedRows === 0n || !row.webhook_url) return;
    const user = await this.db.selectFrom('users').select('webhook_secret').where('id', '=', row.user_id).executeTakeFirst();
    if (!user) return;
    this.webhooks.deliver(row.webhook_url, user.webhook_secret, await statusBody({ ...row, ...changes }, this.store));
  }
}

/** Rejects as soon as `signal` aborts, even if the runner is slow to notice. */
function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
