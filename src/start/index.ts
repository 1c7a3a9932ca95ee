import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import { startApi, type RunningServer } from './api.js';
import { startEmbedded } from './embedded.js';
import { startWorker, type RunningWorker } from './worker.js';

export type { RunningServer } from './api.js';
export type { RunningWorker } from './worker.js';
export { startApi } from './api.js';
export { startEmbedded } from './embedded.js';
export { startWorker } from './worker.js';

/** Whatever the configured role started: a server (`all`, `api`) with its URL, or a worker. */
export type RunningRole = { role: 'all' | 'api'; server: RunningServer } | { role: 'worker'; worker: RunningWorker };

/** Starts the process `config.role` names, on the one logger `log`. */
export async function startRole(config: Config, log: FastifyBaseLogger): Promise<RunningRole & { close(): Promise<void> }> {
  if (config.role === 'worker') {
    const worker = await startWorker(config, log);
    return { role: 'worker', worker, close: () => worker.close() };
  }
  const server = config.role === 'api' ? await startApi(config, log) : await startEmbedded(config, log);
  return { role: config.role, server, close: () => server.close() };
}
