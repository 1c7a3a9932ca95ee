import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort } from '../../src/free-port.js';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const VITE_NODE = path.join(ROOT, 'node_modules/vite-node/vite-node.mjs');

/** A server running in its own process, so the load generator never shares its event loop. */
export interface ChildServer {
  name: string;
  pid: number;
  url: string;
  child: ChildProcess;
  /** The last few KB the process wrote to stderr (for failure messages). */
  stderrTail(): string;
  /**
   * Starts the process again on the same port when it is no longer running (this
   * machine is shared; a bench must not publish zeros because a server vanished).
   * Resolves to a note saying why it had died, or null when it was alive.
   */
  reviveIfDead(): Promise<string | null>;
  stop(): Promise<void>;
}


/**
 * Per-user limits the bench runs Keyframe with: its load comes from one key at
 * thousands of requests a second over 10-100 connections, so the defaults (600
 * presigns a minute, 100 pending uploads, 8 uploads at once) would turn almost
 * every answer into a 429 or a 503. Raised, not
 * switched off: the rate limiter and the quota ledger still run on every
 * presign, which is what the presign rows measure (docs/performance.md).
 */
export const BENCH_LIMITS: Record<string, string> = {
  KEYFRAME_PRESIGNS_PER_MINUTE: '1000000',
  KEYFRAME_MAX_PENDING_UPLOADS: '1000000',
  KEYFRAME_MAX_STORED_BYTES: String(Number.MAX_SAFE_INTEGER),
  KEYFRAME_GENERATIONS_PER_HOUR: '1000000',
  KEYFRAME_MAX_ACTIVE_GENERATIONS: '100000',
  KEYFRAME_MAX_UPLOADS_PER_USER: '10000',
  KEYFRAME_MAX_UPLOADS: '10000',
};

/** Starts the real `keyframe serve` (compiled dist/) on loopback: on `env.PORT` when given, else a free port. */
export async function startKeyframe(name: string, dataDir: string, env: Record<string, string> = {}): Promise<ChildServer> {
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const launch = () =>
    spawn(process.execPath, [path.join(ROOT, 'bin/keyframe.js'), 'serve'], {
      cwd: ROOT,
      env: { ...process.env, HOST: '127.0.0.1', KEYFRAME_DATA_DIR: dataDir, ...BENCH_LIMITS, ...env, PORT: String(port) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  return waitUntilUp(name, launch, `http://127.0.0.1:${port}`, '/healthz');
}

/** Starts one of bench/servers/*.ts (a peer) through vite-node on a free loopback port. */
export async function startPeer(name: string, script: string, env: Record<string, string> = {}): Promise<ChildServer> {
  const port = await freePort();
  const launch = () =>
    spawn(process.execPath, [VITE_NODE, path.join(ROOT, 'bench/servers', script)], {
      cwd: ROOT,
      env: { ...process.env, PORT: String(port), ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  return waitUntilUp(name, launch, `http://127.0.0.1:${port}`, '/healthz');
}

async function waitUntilUp(name: string, launch: () => ChildProcess, url: string, probe: string): Promise<ChildServer> {
  let stderr = '';
  const child = launch();
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const deadline = Date.now() + 30_000;
  let last = '';
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}): ${stderr}`);
    try {
      const res = await fetch(url + probe, { signal: AbortSignal.timeout(2000) });
      if (res.ok) break;
      last = `answered ${res.status}`;
    } catch (err) {
      last = String((err as Error).cause ?? err); // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name} did not start within 30 s (${last}): ${stderr}`);
    }
    await sleep(100);
  }
  const server: ChildServer = {
    name,
    pid: child.pid!,
    url,
    child,
    stderrTail: () => stderr,
    async reviveIfDead() {
      const { exitCode, signalCode } = server.child;
      if (exitCode === null && signalCode === null) return null;
      const fresh = await waitUntilUp(name, launch, url, probe);
      const note = `${name} had exited (${signalCode ?? `code ${exitCode}`}); restarted`;
      Object.assign(server, { pid: fresh.pid, child: fresh.child, stderrTail: fresh.stderrTail, stop: fresh.stop });
      return note;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      }),
  };
  return server;
}

/** Resident set size of a process in bytes (Linux /proc). */
export function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
  return Number(kb ?? 0) * 1024;
}

/**
 * Runs `work` while sampling the process's RSS every 5 ms: its result, and the peak growth over
 * the RSS before. A process gone mid-way stops the sampling; the work then fails and says so.
 */
export async function withPeakRss<T>(pid: number, work: () => Promise<T>): Promise<{ result: T; rssGrowth: number }> {
  const before = rssBytes(pid);
  let peak = before;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(pid));
    } catch {
      // process gone
    }
  }, 5);
  try {
    const result = await work();
    return { result, rssGrowth: peak - before };
  } finally {
    clearInterval(timer);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs one measurement; if one of `servers` died meanwhile (killed from outside:
 * this machine is shared), restarts it and measures again, once.
 */
export async function measureWhileAlive<T>(servers: ChildServer[], measure: () => Promise<T>, log: (line: string) => void): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    for (const s of servers) {
      const note = await s.reviveIfDead();
      if (note) log(note);
    }
    const result = await measure();
    const dead = servers.filter((s) => s.child.exitCode !== null || s.child.signalCode !== null);
    if (dead.length === 0 || attempt === 2) return result;
    log(`${dead.map((s) => s.name).join(', ')} died during a measurement; measuring again`);
  }
}
