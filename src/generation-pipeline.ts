import path from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from './config.js';
import type { Db } from './db/database.js';
import { Generations } from './domain/generations/generations.js';
import { ModelRegistry } from './domain/generations/model-registry.js';
import type { Runner, RunnerCallbacks } from './domain/generations/runner.js';
import { GenerationWorker } from './domain/generations/worker.js';
import { MultipartSweep } from './domain/multipart-sweep.js';
import { openUploadCleanup } from './start/cleanup.js';
import { NO_TELEMETRY, type Telemetry } from './domain/telemetry.js';
import { GenerationLimits } from './domain/usage/generation-usage.js';
import type { Verifier } from './domain/verification.js';
import type { JobConsumer, JobProducer } from './queue/job-queue.js';
import { CallbackLedger } from './runners/http/callback-ledger.js';
import { HttpRunner, workerUrlsOf } from './runners/http/http-runner.js';
import { LocalRunner } from './runners/local/local-runner.js';
import { signingSecret } from './signing-secret.js';
import type { ObjectStore } from './storage/object-store.js';
import { WebhookDispatcher } from './webhooks/webhook-dispatcher.js';
import { WebhookSender } from './webhooks/webhook-sender.js';

/**
 * Generations in two halves, so that each role wires only its own: the
 * service the API's routes use (it validates and enqueues), and the worker
 * that runs jobs. The embedded role wires both on one queue.
 */

/** What both halves share: the model registry and the webhook sender (the API checks `webhook_url`, the worker's dispatcher sends). */
export interface GenerationBasics {
  registry: ModelRegistry;
  webhooks: WebhookSender;
}

/** Loads the model registry (throws a ModelRegistryError when the file is invalid) and makes the webhook sender. */
export function openGenerationBasics(config: Config): GenerationBasics {
  return {
    registry: ModelRegistry.load(config.generation.modelsFile),
    webhooks: new WebhookSender({ allowPrivate: config.generation.webhookAllowPrivate }),
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

/** The worker's half: runs jobs the consumer hands it, through the model's runner, and sends webhook deliveries. */
export interface GenerationWorkerNode {
  /**
   * Completion callbacks of model workers (runner `http`), kept in the database: any API node
   * accepts them. The embedded role serves them through this one, so that a callback it accepts
   * wakes its own waiting run at once.
   */
  runnerCallbacks: RunnerCallbacks;
  /** Prepares the runners and starts taking jobs and sending webhooks; in the embedded role, call once the server listens (model workers call it back, and on the disk store download through its URLs). */
  start(): Promise<void>;
  /** Stops taking jobs and sending webhooks; running jobs and deliveries in flight are aborted and handed back (a later start, here or elsewhere, takes them again). */
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
  /** The process's metrics (src/start/shared.ts `openMetrics`): settled generations, webhook attempts, expiries and retention deletions. */
  telemetry: Telemetry = NO_TELEMETRY,
): GenerationWorkerNode {
  const logError = (err: unknown, subject: string) => log.error({ err, subject }, 'generation error');
  const local = new LocalRunner({ store, workDir: path.join(config.dataDir, 'tmp', 'generations'), log: logError });
  const callbacks = openRunnerCallbacks(config, db, log);
  const remote = new HttpRunner({ store, publicUrl, callbacks, workerUrl: workerUrlsOf(basics.registry.all()), log: logError });
  const runners: Record<'local' | 'http', Runner> = { local, http: remote };
  // Deliveries are sent wherever jobs run; the worker queues them in the transaction that settles each job.
  const webhooks = new WebhookDispatcher(db, store, basics.webhooks, { log: (message, details) => log.warn(details, message), telemetry });
  const worker = new GenerationWorker(db, basics.registry, webhooks, {
    timeoutSeconds: config.generation.timeoutSeconds,
    runnerFor: (type) => runners[type],
    log: logError,
    telemetry,
  });
  // Expired multipart uploads of every user are aborted where jobs run (issue 13).
  const sweep = new MultipartSweep(db, store, {
    intervalMs: config.multipartSweepMinutes * 60_000,
    log: (message, details) => log.warn(details, message),
    telemetry,
  });
  // The upload lifecycle's retention and expiry (issue 15), also where jobs run.
  const cleanup = openUploadCleanup(config, db, store, log, telemetry);
  return {
    runnerCallbacks: callbacks,
    async start() {
      await local.init();
      webhooks.start();
      sweep.start();
      cleanup.start();
      await consumer.start(worker);
    },
    async stop() {
      await consumer.stop();
      await sweep.stop();
      await cleanup.stop();
      await webhooks.stop();
    },
  };
}

/**
 * The callbacks of an API process that runs no jobs: those of jobs any worker runs, read from and
 * settled in the database, and announced to the waiting worker (NOTIFY on PostgreSQL; it polls too).
 */
export function openApiRunnerCallbacks(config: Config, db: Db, log: FastifyBaseLogger): RunnerCallbacks {
  return openRunnerCallbacks(config, db, log);
}

/** The ledger on this node's signing secret, which every node of a cluster shares (config requires it for split roles on PostgreSQL). */
function openRunnerCallbacks(config: Config, db: Db, log: FastifyBaseLogger): CallbackLedger {
  return new CallbackLedger(db, signingSecret(config), { log: (err, subject) => log.error({ err, subject }, 'runner callback error') });
}
