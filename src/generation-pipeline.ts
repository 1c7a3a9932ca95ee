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
import type { JobConsumer, JobProducer } from './queue/job-queue.js';
import { HttpRunner, workerUrlsOf } from './runners/http/http-runner.js';
import { LocalRunner } from './runners/local/local-runner.js';
import type { ObjectStore } from './storage/object-store.js';
import { WebhookSender } from './webhooks/webhook-sender.js';

/**
 * Generations in two halves, so that each role wires only its own: the
 * service the API's routes use (it validates and enqueues), and the worker
 * that runs jobs. The embedded role wires both on one queue.
 */

/** What both halves share: the model registry and the webhook sender (the API checks `webhook_url`, the worker delivers). */
export interface GenerationBasics {
  registry: ModelRegistry;
  webhooks: WebhookSender;
}

/** Loads the model registry (throws a ModelRegistryError when the file is invalid) and makes the webhook sender. */
export function openGenerationBasics(config: Config, log: FastifyBaseLogger): GenerationBasics {
  return {
    registry: ModelRegistry.load(config.generation.modelsFile),
    webhooks: new WebhookSender({
      allowPrivate: config.generation.webhookAllowPrivate,
      log: (message, details) => log.warn(details, message),
    }),
  };
}

/** The API's half: creates generations and hands them to the queue's producer; never runs one. */
export function openGenerationService(
  config: Config,
  db: Db,
  store: ObjectStore,
  verifier: Verifier,
  basics: GenerationBasics,
  producer: JobProducer,
): Generations {
  return new Generations(db, verifier, basics.registry, producer, store, basics.webhooks, new GenerationLimits(db, config.limits));
}

/** The worker's half: runs jobs the consumer hands it, through the model's runner. */
export interface GenerationWorkerNode {
  /**
   * Completion callbacks of model workers (runner `http`). They are held in this process's memory,
   * so only a process that runs jobs and serves HTTP (the embedded role) can answer them today.
   */
  runnerCallbacks: RunnerCallbacks;
  /** Prepares the runners and starts taking jobs; in the embedded role, call once the server listens (model workers call it back, and on the disk store download through its URLs). */
  start(): Promise<void>;
  /** Stops taking jobs; the running ones are aborted and handed back (a later start, here or elsewhere, runs them again). */
  stop(): Promise<void>;
}

export function openGenerationWorker(
  config: Config,
  db: Db,
  store: ObjectStore,
  basics: GenerationBasics,
  consumer: JobConsumer,
  publicUrl: string,
  log: FastifyBaseLogger,
): GenerationWorkerNode {
  const logError = (err: unknown, subject: string) => log.error({ err, subject }, 'generation error');
  const local = new LocalRunner({ store, workDir: path.join(config.dataDir, 'tmp', 'generations'), log: logError });
  const remote = new HttpRunner({ store, publicUrl, workerUrl: workerUrlsOf(basics.registry.all()), log: logError });
  const runners: Record<'local' | 'http', Runner> = { local, http: remote };
  const worker = new GenerationWorker(db, basics.registry, store, basics.webhooks, {
    timeoutSeconds: config.generation.timeoutSeconds,
    runnerFor: (type) => runners[type],
    log: logError,
  });
  return {
    runnerCallbacks: remote,
    async start() {
      await local.init();
      await consumer.start(worker);
    },
    async stop() {
      await consumer.stop();
    },
  };
}

/**
 * Callbacks of an API process that runs no jobs: it dispatched nothing, so every callback is for a
 * job it does not know (the same answer the embedded role gives a job that is not waiting). Callbacks
 * reaching any API node is item 3 of issue 12 (their state in the database).
 */
export function openApiRunnerCallbacks(store: ObjectStore, basics: GenerationBasics, publicUrl: string, log: FastifyBaseLogger): RunnerCallbacks {
  return new HttpRunner({
    store,
    publicUrl,
    workerUrl: workerUrlsOf(basics.registry.all()),
    log: (err, subject) => log.error({ err, subject }, 'generation error'),
  });
}
