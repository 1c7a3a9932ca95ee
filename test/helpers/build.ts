import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const BIN = path.join(ROOT, 'bin/keyframe.js');

/**
 * Compiles src/ to dist/ for tests that spawn the real `keyframe` command, only
 * when a source file is newer than the build, and under a lock: test files run
 * in parallel and none may load a dist/ file another is rewriting.
 */
export function ensureBuilt(): void {
  const script =
    'if [ ! -f dist/cli/main.js ] || [ -n "$(find src -newer dist/cli/main.js -print -quit)" ]; then npx tsc -p tsconfig.build.json; fi';
  execFileSync('flock', ['/tmp/keyframe-build.lock', 'sh', '-c', script], { cwd: ROOT, stdio: 'pipe' });
}

/** What a run of the `keyframe` command printed, and how it exited. */
export interface KeyframeRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real `keyframe` command (dist/, see ensureBuilt) with only PATH and
 * `env` in its environment, killed after 30 s; resolves with its exit and output.
 */
export function runKeyframe(args: string[], env: Record<string, string>): Promise<KeyframeRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'silent', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
