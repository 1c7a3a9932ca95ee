/** Where a command's output goes: lines on stdout and stderr, and the terminal behind stderr when there is one. */
export interface Out {
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  /**
   * stderr when it is a terminal (isTTY): progress bars and status lines redraw in place on it.
   * Absent when stderr is a file or pipe; progress is then plain lines through `stderr`.
   */
  terminal?: Terminal;
}

/** A terminal to draw on: raw writes (no newline added), and its width when known. */
export interface Terminal {
  write: (text: string) => void;
  columns?: number;
}

/** What every command's action gets: the environment runCli was given (never process.env), the output, and the exit code to set. */
export interface CliContext {
  env: NodeJS.ProcessEnv;
  out: Out;
  exitCode: number;
}

/** A mistake in how the command was called: exit code 2. */
export class UsageError extends Error {}

/** Runs an action and records its exit code: commander's actions return nothing. */
export const recordExit =
  <A extends unknown[]>(ctx: CliContext, action: (...args: A) => Promise<number>) =>
  async (...args: A): Promise<void> => {
    ctx.exitCode = await action(...args);
  };
