import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { Config } from '../config.js';
import type { JobQueue } from '../queue/job-queue.js';
import { openGenerationBasics, openGenerationWorker, type GenerationWorkerNode } from '../generation-pipeline.js';
import { apiAddress, buildApiApp, type RunningServer } from './api.js';
import type { MetricsListener } from '../metrics/metrics-listener.js';
import {
  consumerOf,
  createLogger,
  openDatabaseFor,
  openFoundation,
  openJobQueue,
  openMetrics,
  openMetricsListener,
  producerOf,
  type Foundation,
} from './shared.js';

/**
 * Composition root of the embedded role (`all`, what `keyframe serve` runs by default): the HTTP
 * API and the generation worker in one process, on one queue, so an enqueue wakes the worker at once.
 */
export async function startEmbedded(config: Config, log: FastifyBaseLogger = createLogger(config)): Promise<RunningServer> {
  const db = await openDatabaseFor(config);
  let foundation: Foundation | null = null;
  let app: FastifyInstance | null = null;
  let worker: GenerationWorkerNode | null = null;
  let queue: JobQueue | null = null;
  let metricsListener: MetricsListener | null = null;
  try {
    const { port, url, publicUrl } = await apiAddress(config);
    foundation = await openFoundation(config, db, publicUrl, log);
    const basics = openGenerationBasics(config);
    queue = openJobQueue(config, foundation, log);
    const metrics = openMetrics(config, db, log);
    worker = openGenerationWorker(config, db, foundation.store, basics, consumerOf(queue), publicUrl, log, metrics ?? undefined);
    app = await buildApiApp(config, foundation, log, basics, producerOf(queue), worker.runnerCallbacks, metrics);
    await app.listen({ host: config.host, port });
    metricsListener = await openMetricsListener(config, metrics, log);
    // Jobs start only now: model workers (runner http) call this server back.
    await worker.start();
    const scrapes = metricsListener;
    const running = app;
    const jobs = worker;
    const jobQueue = queue;
    const opened = foundation;
    let closing: Promise<void> | null = null;
    return {
      app: running,
      db,
      store: opened.store,
      url,
      log,
      close: () =>
        (closing ??= (async () => {
          await scrapes?.close();
          // Stop claiming and hand the running jobs back first, then drain the HTTP requests in flight.
          await jobs.stop();
          await running.close();
          await jobQueue.close();
          await opened.close();
        })()),
    };
  } catch (err) {
    await metricsListener?.close();
    await worker?.stop().catch(() => {});
    await app?.close();
    await queue?.close().catch(() => {});
    await (foundation ? foundation.close() : db.destroy());
    throw err;
  }
}
