import { spawn } from 'node:child_process';

/**
 * Limits every media child process (ffmpeg, ffprobe) runs under. They are far
 * below a generation's own time limit: a decode loop on hostile bytes dies in
 * seconds, and a pixel bomb hits the memory limit instead of the machine.
 */
export interface ProcessLimits {
  /** CPU seconds (RLIMIT_CPU): the kernel kills the child with SIGKILL past it. */
  cpuSeconds: number;
  /** Address space in bytes (RLIMIT_AS): allocations past it fail, and the child exits. */
  memoryBytes: number;
  /** Wall-clock seconds: the child's whole process group is killed past it. */
  wallSeconds: number;
}

export interface BoundedRun {
  limits: ProcessLimits;
  /** Aborting kills the child's process group at once. */
  signal: AbortSignal;
  /** Working directory of the child (a private scratch directory). */
  cwd?: string;
  /** Bytes of stdout kept; more is an error (ffprobe's JSON is small). Default 1 MiB. */
  maxStdoutBytes?: number;
}

/** A child that failed: its exit, and the end of its stderr (for logs, not for clients). */
export class ChildProcessFailure extends Error {
  constructor(
    message: string,
    /** Why it stopped: a non-zero exit, one of the limits, or `aborted`. */
    readonly stoppedBy: 'exit' | 'cpu' | 'memory' | 'wall' | 'aborted' | 'output',
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'ChildProcessFailure';
  }
}

/**
 * Runs `command` to completion under `limits` and resolves with its stdout.
 * The limits are set by the shell's `ulimit` just before it execs the command,
 * so they hold for the command alone; the child leads its own process group,
 * which is SIGKILLed whole on abort or past the wall-clock limit.
 */
export function runBounded(command: string, args: readonly string[], run: BoundedRun): Promise<string> {
  const { limits, signal } = run;
  const maxStdout = run.maxStdoutBytes ?? 1024 * 1024;
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new ChildProcessFailure('aborted before start', 'aborted', ''));
    const kib = Math.ceil(limits.memoryBytes / 1024);
    const child = spawn('/bin/sh', ['-c', `ulimit -t ${limits.cpuSeconds} && ulimit -v ${kib} && exec "$0" "$@"`, command, ...args], {
      cwd: run.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' },
    });
    let reason: ChildProcessFailure['stoppedBy'] | null = null;
    const killGroup = (why: NonNullable<typeof reason>) => {
      reason ??= why;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => killGroup('wall'), limits.wallSeconds * 1000);
    const onAbort = () => killGroup('aborted');
    signal.addEventListener('abort', onAbort, { once: true });

    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      stdoutBytes += chunk.length;
      if (stdoutBytes > maxStdout) return killGroup('output');
      stdout.push(chunk);
    });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      reject(new ChildProcessFailure(`${command} could not start: ${err.message}`, 'exit', ''));
    });
    child.once('close', (code, sig) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      // Whatever the child started is ended with it.
      killGroup(reason ?? 'exit');
      if (code === 0 && reason === 'exit') return resolve(Buffer.concat(stdout).toString('utf8'));
      const why: ChildProcessFailure['stoppedBy'] =
        reason !== 'exit' ? reason! : sig === 'SIGKILL' || sig === 'SIGXCPU' ? 'cpu' : /Cannot allocate memory|out of memory|ENOMEM|Failed to allocate/i.test(stderr) ? 'memory' : 'exit';
      reject(new ChildProcessFailure(`${command.split('/').pop()} stopped (${describe(why, limits)}; exit ${code ?? sig})`, why, stderr.trim()));
    });
  });
}

function describe(cause: ChildProcessFailure['stoppedBy'], limits: ProcessLimits): string {
  switch (cause) {
    case 'cpu':
      return `over its ${limits.cpuSeconds} s CPU limit`;
    case 'memory':
      return `over its ${Math.round(limits.memoryBytes / 2 ** 20)} MiB memory limit`;
    case 'wall':
      return `over its ${limits.wallSeconds} s time limit`;
    case 'aborted':
      return 'aborted';
    case 'output':
      return 'too much output';
    case 'exit':
      return 'failed';
  }
}
