import path from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from './config.js';
import type { Db } from './db/database.js';
import { Generations } from './domain/generations/generations.js';
import { ModelRegistry } from './domain/generations/model-registry.js';
import type { Runner, RunnerCallbacks } from './domain/generations/runner.js';
import { GenerationWorker } from './domain/generations/worker.js';
import { GenerationLimits } from './domain/usage/generation-usage.js';
import type { Verifier } from './domain/verification.js';
import { InProcessQueue } from './queue/in-process-queue.js';
import { HttpRunner, workerUrlsOf } from './runners/http/http-runner.js';
import { LocalRunner } from './runners/local/local-runner.js';
import type { ObjectStore } from './storage/object-store.js';
import { WebhookSender } from './webhooks/webhook-sender.js';

/** Generations wired together: the service the routes use, and the worker's life cycle. */
export interface GenerationPipeline {
  generations: Generations;
  runnerCallbacks: RunnerCallbacks;
  /** Recovers interrupted jobs and starts working; call once the server listens (model workers call it back, and on the disk store download through its URLs). */
  start(log: FastifyBaseLogger): Promise<void>;
  stop(): Promise<void>;
}

/** Builds the pipeline; throws a ModelRegistryError when the model registry file is invalid. */
export function openGenerationPipeline(config: Config, db: Db, store: ObjectStore, verifier: Verifier, publicUrl: string): GenerationPipeline {
  const registry = ModelRegistry.load(config.generation.modelsFile);
  let log: FastifyBaseLogger | null = null;
  const logError = (err: unknown, subject: string) => log?.error({ err, subject }, 'generation error');

  const webhooks = new WebhookSender({
    allowPrivate: config.generation.webhookAllowPrivate,
    log: (message, details) => log?.warn(details, message),
  });
  const local = new LocalRunner({ store, workDir: path.join(config.dataDir, 'tmp', 'generations'), log: logError });
  const remote = new HttpRunner({ store, publicUrl, workerUrl: workerUrlsOf(registry.all()), log: logError });
  const runners: Record<'local' | 'http', Runner> = { local, http: remote };
  const queue = new InProcessQueue(db, {
    concurrency: config.generation.concurrency,
    maxAttempts: config.generation.maxAttempts,
    onError: logError,
  });
  const worker = new GenerationWorker(db, registry, store, webhooks, {
    timeoutSeconds: config.generation.timeoutSeconds,
    runnerFor: (type) => runners[type],
    log: logError,
  });

  return {
    generations: new Generations(db, verifier, registry, queue, store, webhooks, new GenerationLimits(db, config.limits)),
    runnerCallbacks: remote,
    async start(logger) {
      log = logger;
      await local.init();
      await queue.start(worker);
    },
    async stop() {
      await queue.stop();
      webhooks.stop();
    },
  };
}
