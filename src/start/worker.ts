import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import type { Db } from '../db/database.js';
import { openGenerationBasics, openGenerationWorker, type GenerationWorkerNode } from '../generation-pipeline.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { MetricsListener } from '../metrics/metrics-listener.js';
import { createLogger, hostForUrl, openDatabaseFor, openFoundation, openJobConsumer, openMetrics, openMetricsListener, type Foundation } from './shared.js';

/** A process that only runs jobs (the `worker` role): no API port (only the metrics listener, when configured). */
export interface RunningWorker {
  db: Db;
  store: ObjectStore;
  log: FastifyBaseLogger;
  /** The orderly shutdown: stops claiming, hands running jobs back, closes pools and clients. Idempotent. */
  close(): Promise<void>;
}

/**
 * Composition root of the `worker` role: the queue's consumer and the runners, nothing else. It
 * listens on no API port (a process supervisor watches the process itself; /readyz is the API's);
 * with `KEYFRAME_METRICS_LISTEN` it opens the metrics listener, its one port.
 * `KEYFRAME_PUBLIC_URL` is where model workers (runner `http`) send their callbacks: an API node.
 */
export async function startWorker(config: Config, log: FastifyBaseLogger = createLogger(config)): Promise<RunningWorker> {
  const db = await openDatabaseFor(config);
  let foundation: Foundation | null = null;
  let worker: GenerationWorkerNode | null = null;
  let metricsListener: MetricsListener | null = null;
  try {
    const publicUrl = config.publicUrl ?? `http://${hostForUrl(config.host)}:${config.port}`;
    foundation = await openFoundation(config, db, publicUrl, log);
    const basics = openGenerationBasics(config);
    const metrics = openMetrics(config, db, log);
    worker = openGenerationWorker(config, db, foundation.store, basics, openJobConsumer(config, foundation, log), publicUrl, log, metrics ?? undefined);
    await worker.start();
    // The worker's one port, when configured: its metrics, for a scraper (its jobs and webhooks are counted here).
    metricsListener = await openMetricsListener(config, metrics, log);
    const scrapes = metricsListener;
    const jobs = worker;
    const opened = foundation;
    let closing: Promise<void> | null = null;
    return {
      db,
      store: opened.store,
      log,
      close: () =>
        (closing ??= (async () => {
          await scrapes?.close();
          await jobs.stop();
          await opened.close();
        })()),
    };
  } catch (err) {
    await metricsListener?.close();
    await worker?.stop().catch(() => {});
    await (foundation ? foundation.close() : db.destroy());
    throw err;
  }
}
