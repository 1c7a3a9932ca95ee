import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { DatabaseTarget } from '../../src/db/database.js';
import { ROOT } from './build.js';
import type { TestDatabase } from './database.js';

/** A TypeScript file of the tests running in a Node process of its own, its output captured. */
export interface TsChild {
  child: ChildProcess;
  /** What it wrote to stdout and stderr so far. */
  out(): string;
  err(): string;
  /** Resolves once it exited. */
  exited: Promise<void>;
  /** SIGKILL (a crash: nothing of its own clean-up runs), resolving once it is gone. */
  kill(): Promise<void>;
}

/**
 * Runs `script` (a path under the repository) through vite-node, so that a
 * test can SIGKILL a real process holding work (a queue consumer, a webhook
 * dispatcher) and watch what the survivors do. Every child is also killed by
 * `killChildren` (call it in afterEach).
 */
export function spawnTsChild(script: string, env: Record<string, string>): TsChild {
  const child = spawn(process.execPath, [path.join(ROOT, 'node_modules/vite-node/vite-node.mjs'), path.join(ROOT, script)], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      children.delete(child);
      resolve();
    }),
  );
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  return {
    child,
    out: () => out,
    err: () => err,
    exited,
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

const children = new Set<ChildProcess>();

/** SIGKILLs every child `spawnTsChild` started that still runs. */
export function killChildren(): void {
  for (const child of children) child.kill('SIGKILL');
}

/** How a child process opens the test's database (its own connection, same data). */
export function childTargetOf(database: TestDatabase): DatabaseTarget {
  return database.dialect === 'sqlite' ? { dialect: 'sqlite', dataDir: database.dataDir } : { dialect: 'postgres', url: database.url!, poolSize: 2 };
}
