/**
 * Presign through nginx on the loopback cluster of scripts/cluster.sh (`serve --role api` nodes on
 * PostgreSQL, Redis and S3 mode, behind deploy/nginx/keyframe.conf): two API nodes behind nginx,
 * the same nginx with one node (the second stopped with `cluster.sh stop`), and that one node
 * straight, without nginx. Interleaved round by round; ratios are per round, side by side.
 *
 * On a machine of two cores this shows what the proxy costs, NOT how Keyframe scales: both nodes,
 * nginx, PostgreSQL, Redis and the load generator share those two cores, so a second node brings
 * no CPU to serve with. Scaling out needs nodes on machines (or cores) of their own.
 *
 * Part of `npm run bench`; alone: `BENCH_CLUSTER_ALONE=1 npx vite-node bench/cluster-presign.ts`
 * (BENCH_QUICK=1 for a smoke run), which writes bench/results/<timestamp>-cluster-presign.json.
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CLUSTER_SCRIPT, printedClusterEnv } from '../test/cluster/settings.js';
import { BENCH_POOL_SIZE, BENCH_POSTGRES_URL, postgresUnreachable } from './lib/postgres.js';
import { loadPresign, type LoadFigures } from './lib/presign-load.js';
import { BENCH_LIMITS, ROOT, sleep } from './lib/processes.js';
import { fmt, summarise, type Summary } from './lib/stats.js';

/** The bench's own cluster: a state dir, ports, database, bucket and Redis prefix no other cluster uses. */
const BENCH_CLUSTER: Record<string, string> = {
  CLUSTER_DIR: '/tmp/keyframe-cluster-bench',
  CLUSTER_PORT: '38080',
  CLUSTER_API_NODES: '2',
  CLUSTER_WORKERS: '0',
  CLUSTER_DATABASE: 'keyframe_cluster_bench',
  CLUSTER_BUCKET: 'keyframe-cluster-bench',
  // The pool every Keyframe of the bench gets (bench/lib/postgres.ts).
  KEYFRAME_DATABASE_POOL_SIZE: String(BENCH_POOL_SIZE),
  // Request lines at info would add a log write per presign to what is measured.
  LOG_LEVEL: 'warn',
  ...BENCH_LIMITS,
};

/** nginx's fail_timeout in deploy/nginx/keyframe.conf: a node restarted is skipped until it has passed. */
const FAIL_TIMEOUT_MS = 5000;

type Side = { rps: Summary; p50: Summary; p99: Summary; errors: number };

export interface ClusterPresignResult {
  connections: number;
  seconds: number;
  cores: number;
  twoNodes: Side;
  oneNode: Side;
  direct: Side;
  /** Per round: nginx → 2 nodes / nginx → 1 node (req/s). */
  twoVsOne: Summary;
  /** Per round: nginx → 1 node / the node without nginx (req/s): what the proxy costs. */
  proxyVsDirect: Summary;
  table: string;
}

export interface ClusterPresignOptions {
  connections: number;
  rounds: number;
  seconds: number;
  /** S3_ENDPOINT and credentials of a running S3 service; null: the cluster starts a Ceph RGW of its own. */
  s3Env: Record<string, string> | null;
  log: (line: string) => void;
}

/** Runs the cluster bench; resolves to null (with the reason logged) when the cluster cannot start. */
export async function benchClusterPresign(options: ClusterPresignOptions): Promise<ClusterPresignResult | null> {
  const { connections, seconds, log } = options;
  const s3: Record<string, string> = {};
  for (const name of ['S3_ENDPOINT', 'S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY']) if (options.s3Env?.[name]) s3[name] = options.s3Env[name];
  log('cluster presign: scripts/cluster.sh up (2 API nodes behind nginx)');
  try {
    await script(['up'], { ...BENCH_CLUSTER, ...s3 });
  } catch (err) {
    log(`cluster presign SKIPPED: ${(err as Error).message}`);
    await script(['down']).catch(() => {});
    return null;
  }
  try {
    const env = await printedClusterEnv(BENCH_CLUSTER.CLUSTER_DIR!);
    const key = await createKey(env);
    const nginx = env.CLUSTER_URL!;
    const node1 = env.CLUSTER_API_URLS!.split(' ')[0]!;
    // Warm-up: connections, JIT, the key cache on both nodes.
    await loadPresign(nginx, key, connections, 1);
    const two: LoadFigures[] = [];
    const one: LoadFigures[] = [];
    const direct: LoadFigures[] = [];
    for (let round = 0; round < options.rounds; round++) {
      two.push(await loadPresign(nginx, key, connections, seconds));
      await script(['stop', 'api2']);
      // Every other round the other way round, so that neither of the two gets the warmer slot.
      if (round % 2 === 0) {
        one.push(await loadPresign(nginx, key, connections, seconds));
        direct.push(await loadPresign(node1, key, connections, seconds));
      } else {
        direct.push(await loadPresign(node1, key, connections, seconds));
        one.push(await loadPresign(nginx, key, connections, seconds));
      }
      await script(['start', 'api2']);
      // nginx skips the node it found down until fail_timeout has passed; then a short warm-up.
      await sleep(FAIL_TIMEOUT_MS + 1000);
      await loadPresign(nginx, key, connections, 1);
      log(`cluster presign round ${round + 1}: ${two.at(-1)!.rps.toFixed(0)} / ${one.at(-1)!.rps.toFixed(0)} / ${direct.at(-1)!.rps.toFixed(0)} req/s (2 nodes / 1 node / no nginx)`);
    }
    const side = (figures: LoadFigures[]): Side => ({
      rps: summarise(figures.map((f) => f.rps)),
      p50: summarise(figures.map((f) => f.p50)),
      p99: summarise(figures.map((f) => f.p99)),
      errors: figures.reduce((n, f) => n + f.errors + f.non2xx, 0),
    });
    const result: Omit<ClusterPresignResult, 'table'> = {
      connections,
      seconds,
      cores: os.availableParallelism(),
      twoNodes: side(two),
      oneNode: side(one),
      direct: side(direct),
      twoVsOne: summarise(two.map((f, i) => f.rps / one[i]!.rps)),
      proxyVsDirect: summarise(one.map((f, i) => f.rps / direct[i]!.rps)),
    };
    return { ...result, table: clusterPresignTable(result) };
  } finally {
    await script(['down']);
  }
}

/** The markdown table of a result (also printed by `npm run bench`). */
export function clusterPresignTable(r: Omit<ClusterPresignResult, 'table'>): string {
  const row = (name: string, s: Side) => `| ${name} | ${fmt(s.rps)} | ${s.p50.median} / ${s.p99.median} | ${s.errors} |`;
  return [
    `| Presign through nginx (cluster.sh: PostgreSQL, Redis, S3 mode), ${r.connections} conn, ${r.seconds} s | req/s | p50 / p99 ms | errors |`,
    '|---|---|---|---|',
    row('nginx → 2 API nodes', r.twoNodes),
    row('nginx → 1 API node (the other stopped)', r.oneNode),
    row('1 API node, no nginx', r.direct),
    '',
    `2 nodes / 1 node behind nginx: **${fmt(r.twoVsOne, 2)}×**; nginx → 1 node / no nginx: **${fmt(r.proxyVsDirect, 2)}×** (per round).`,
    `On ${r.cores} cores shared by both nodes, nginx, PostgreSQL, Redis and the load generator, this shows the proxy's overhead, ` +
      'not scaling: a second node on the same cores has no CPU of its own to serve with.',
  ].join('\n');
}

/** Runs scripts/cluster.sh on the bench's state dir; rejects with the tail of its output. */
function script(args: string[], settings: Record<string, string> = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [CLUSTER_SCRIPT, ...args], {
      env: { ...process.env, ...settings, CLUSTER_DIR: BENCH_CLUSTER.CLUSTER_DIR },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let output = '';
    child.stderr!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-3000)));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`cluster.sh ${args.join(' ')} exited ${code}: ${output}`))));
  });
}

/** A key for user `bench` on the cluster's database, made with the real CLI. */
function createKey(env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/keyframe.js'), 'keys', 'create', '--user', 'bench'], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d));
    child.stderr!.on('data', (d: Buffer) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stdout.trim()) : reject(new Error(`keyframe keys create exited ${code}: ${stderr}`))));
  });
}

// vite-node hides the script from process.argv, hence the variable.
if (process.env.BENCH_CLUSTER_ALONE === '1') {
  const quick = process.env.BENCH_QUICK === '1';
  const log = (line: string) => process.stderr.write(`  · ${line}\n`);
  const pgDown = await postgresUnreachable(BENCH_POSTGRES_URL);
  if (pgDown) throw new Error(`PostgreSQL not reachable (${pgDown}): the cluster needs it`);
  // S3_* of this shell, if any, reach cluster.sh as they are; without S3_ENDPOINT it starts its own RGW.
  const result = await benchClusterPresign({ connections: 50, rounds: quick ? 1 : 3, seconds: quick ? 1 : 3, s3Env: null, log });
  if (!result) process.exit(1);
  process.stdout.write(result.table + '\n');
  const dir = path.join(ROOT, 'bench/results');
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-cluster-presign${quick ? '-quick' : ''}.json`);
  await writeFile(file, JSON.stringify(result, null, 2));
  process.stderr.write(`wrote ${path.relative(ROOT, file)}\n`);
}
