import type { FastifyBaseLogger } from 'fastify';

export interface ShutdownOptions {
  /** How long the orderly shutdown may take from the first signal; then the process exits at once with code 1. */
  timeoutMs: number;
  log: FastifyBaseLogger;
  /** Ends the process at once (process.exit outside tests). */
  exit?: (code: number) => void;
  /** Signals that start the shutdown (default SIGTERM and SIGINT). */
  signals?: NodeJS.Signals[];
}

export interface ShutdownSignals {
  /** Resolves with the first shutdown signal. */
  requested: Promise<NodeJS.Signals>;
  /** Removes the listeners (a start-up that failed, so that its error ends the process as usual). */
  dispose(): void;
}

/**
 * Listens for SIGTERM and SIGINT from the very start of the process, so that a signal during
 * start-up is not the default "die now" but a shutdown once the role is up. From the first
 * signal on, a second signal, or `timeoutMs` passing, exits at once with code 1: an operator (or a
 * supervisor's stop timeout) is never held hostage by a request or a close that will not end.
 * The deadline timer is unref'd: it never keeps the process alive, but it still fires if
 * something else does past the deadline.
 */
export function watchShutdownSignals(options: ShutdownOptions): ShutdownSignals {
  const { log, timeoutMs } = options;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  let first: NodeJS.Signals | null = null;
  let resolveRequested!: (signal: NodeJS.Signals) => void;
  const requested = new Promise<NodeJS.Signals>((resolve) => (resolveRequested = resolve));
  const onSignal = (signal: NodeJS.Signals) => {
    if (first !== null) {
      log.error({ signal }, 'second signal during shutdown: exiting now');
      exit(1);
      return;
    }
    first = signal;
    log.info({ signal, timeoutMs }, 'shutting down: no new work; running requests finish, running jobs are handed back');
    setTimeout(() => {
      log.error({ timeoutMs }, 'shutdown timed out: exiting now');
      exit(1);
    }, timeoutMs).unref();
    resolveRequested(signal);
  };
  for (const s of signals) process.on(s, onSignal);
  return {
    requested,
    dispose: () => {
      for (const s of signals) process.off(s, onSignal);
    },
  };
}
