import type { Config } from '../../config.js';
import { postgresAddress } from '../../db/postgres.js';
import { startRole } from '../../start/index.js';
import { createLogger } from '../../start/shared.js';
import { watchShutdownSignals } from '../../start/shutdown.js';
import type { Out } from '../context.js';

/** Runs the configured role until SIGTERM or SIGINT, then shuts it down in order (src/start/shutdown.ts). */
export async function serve(config: Config, out: Out): Promise<number> {
  // The process's one logger: every part of the role logs through it.
  const log = createLogger(config);
  // Listening before start-up, so that a SIGTERM during it is an orderly shutdown once the role is up.
  const signals = watchShutdownSignals({ timeoutMs: config.shutdownTimeoutSeconds * 1000, log });
  let running: Awaited<ReturnType<typeof startRole>>;
  try {
    running = await startRole(config, log);
  } catch (err) {
    signals.dispose();
    throw err;
  }
  const where =
    config.database.url === null
      ? `data in ${config.dataDir}`
      : `records in PostgreSQL ${describePostgres(config.database.url)}, files in ${config.dataDir}`;
  if (running.role === 'worker') out.stderr(`keyframe worker running generation jobs (${where}); no HTTP port`);
  else out.stderr(`keyframe ${running.role === 'api' ? 'API ' : ''}listening on ${running.server.url} (${where})`);
  await signals.requested;
  // Stop taking work, let running requests finish, hand running jobs back, close pools and clients.
  // The listeners stay: until the process has exited, a second signal exits at once instead of killing it half-way.
  await running.close();
  log.info('shut down');
  return 0;
}

/** host:port/database, never the credentials. */
function describePostgres(url: string): string {
  const { host, port, database } = postgresAddress(url);
  return `${host}:${port}/${database}`;
}
