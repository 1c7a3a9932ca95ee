import { CommanderError } from 'commander';
import { UsageError, type CliContext, type Out } from './context.js';
import { buildProgram } from './program.js';

export type { Out } from './context.js';

/** Runs one CLI command; resolves to the process exit code (0 ok, 1 failure, 2 usage). */
export async function runCli(argv: string[], env: NodeJS.ProcessEnv, out: Out): Promise<number> {
  const ctx: CliContext = { env, out, exitCode: 0 };
  try {
    await buildProgram(ctx).parseAsync(argv, { from: 'user' });
    return ctx.exitCode;
  } catch (err) {
    return reportFailure(err, out);
  }
}

/**
 * One line on stderr and the exit code: 2 for a usage error (commander's own, or
 * ours), 0 for commander's "help was shown", 1 for anything else (configuration,
 * API, runtime). Messages are the errors' own: ConfigError, ApiError and the
 * client's KeyframeError carry text meant for the user.
 */
function reportFailure(err: unknown, out: Out): number {
  if (err instanceof CommanderError && err.exitCode === 0) return 0;
  if (err instanceof CommanderError || err instanceof UsageError) {
    out.stderr(`keyframe: ${oneLine(err.message.replace(/^error: /, ''))} (see keyframe --help)`);
    return 2;
  }
  out.stderr(`keyframe: ${oneLine(err instanceof Error ? err.message : String(err))}`);
  return 1;
}

/**
 * One line (commander puts its suggestion, "Did you mean …?", on a line of its
 * own), with any API key cut short: commander quotes a mistyped option whole,
 * `--api-kye=prism_sk_…` included.
 */
const oneLine = (message: string) =>
  message
    .replace(/\s*\n\s*/g, ' ')
    .replace(/prism_sk_[A-Za-z0-9_-]+/g, 'prism_sk_…')
    .trim();
