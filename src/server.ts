import type { Config } from './config.js';
import { startApi, startEmbedded, type RunningServer } from './start/index.js';

export type { RunningServer } from './start/index.js';

/**
 * Starts a server for `config.role`: the embedded default (API and worker) or the `api` role.
 * The composition roots are in src/start/; this is the entry tests use (test/helpers/server.ts).
 */
export async function startServer(config: Config): Promise<RunningServer> {
  if (config.role === 'worker') throw new Error('startServer: the worker role serves no HTTP; use startWorker (src/start/worker.ts)');
  return config.role === 'api' ? startApi(config) : startEmbedded(config);
}
