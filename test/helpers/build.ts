import { execFileSync } from 'node:child_process';
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
