import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { inject } from 'vitest';
import { openDatabase, type Db } from '../../src/db/database.js';
import { ROOT, runKeyframe } from '../helpers/build.js';
import { CLUSTER_SCRIPT, TEST_CLUSTER_SETTINGS } from './settings.js';

/** The longest render keyframe-local takes (~5 s on two cores): long enough to be caught running. */
export const LONG_RENDER = { duration: '20s', resolution: '1080p' } as const;

/** What `cluster.sh env` printed at set-up (KEYFRAME_*, S3_*, CLUSTER_*), or null when the tests skip. */
export function clusterEnv(): Record<string, string> | null {
  return inject('clusterEnv');
}

export interface Cluster {
  env: Record<string, string>;
  /** nginx. */
  url: string;
  /** The API nodes, api1 first. */
  apiUrls: string[];
  dir: string;
}

export function clusterOf(env: Record<string, string>): Cluster {
  return { env, url: env.CLUSTER_URL!, apiUrls: env.CLUSTER_API_URLS!.split(' '), dir: env.CLUSTER_DIR! };
}

/** Runs `scripts/cluster.sh <args>` on the test cluster (its state dir names it); rejects on a non-zero exit. */
export async function clusterScript(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)('bash', [CLUSTER_SCRIPT, ...args], {
    env: { ...process.env, CLUSTER_DIR: TEST_CLUSTER_SETTINGS.CLUSTER_DIR },
    timeout: 120_000,
  });
  return stdout;
}

/** The real `keyframe` CLI on the cluster's database, as an operator runs it after `eval "$(cluster.sh env)"`. */
export async function keyframeCli(cluster: Cluster, args: string[]): Promise<string> {
  const run = await runKeyframe(args, cluster.env);
  if (run.code !== 0) throw new Error(`keyframe ${args.join(' ')} exited ${run.code}: ${run.stderr}`);
  return run.stdout;
}

export async function createKey(cluster: Cluster, user: string): Promise<{ id: string; key: string }> {
  return JSON.parse(await keyframeCli(cluster, ['keys', 'create', '--user', user, '--json'])) as { id: string; key: string };
}

/** A connection of the test's own to the cluster's database (no migration: `up` ran it). */
export function openClusterDb(cluster: Cluster): Promise<Db> {
  return openDatabase({ dialect: 'postgres', url: cluster.env.KEYFRAME_DATABASE_URL!, poolSize: 2 }, { migrate: false });
}

export interface ApiAnswer {
  status: number;
  body: any;
}

/** One JSON request with a Bearer key, bounded by 15 s. */
export async function api(base: string, method: string, pathname: string, key: string, body?: unknown): Promise<ApiAnswer> {
  const res = await fetch(base + pathname, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON (nginx's own error page): kept as text
  }
  return { status: res.status, body: parsed };
}

export const presign = (base: string, key: string, contentType = 'image/png') =>
  api(base, 'POST', '/api/s3/presign-upload', key, { kind: 'upload', contentType, fileName: `reference.${contentType.split('/')[1]}` });

/** Presigns on `base` and PUTs a fixture to the returned URL (straight to RGW); returns the s3_key. */
export async function uploadReference(base: string, key: string, fixture = 'sample.png', contentType = 'image/png'): Promise<string> {
  const presigned = await presign(base, key, contentType);
  if (presigned.status !== 200) throw new Error(`presign on ${base}: ${presigned.status} ${JSON.stringify(presigned.body)}`);
  const put = await fetch(presigned.body.upload_url, {
    method: 'PUT',
    headers: { 'content-type': contentType },
    body: readFileSync(path.join(ROOT, 'test/fixtures/media', fixture)),
    signal: AbortSignal.timeout(15_000),
  });
  await put.arrayBuffer();
  if (put.status !== 200) throw new Error(`PUT to ${new URL(presigned.body.upload_url).origin}: ${put.status}`);
  return presigned.body.s3_key as string;
}

/** Creates a keyframe-local generation on `base`; returns its id. */
export async function createGeneration(base: string, key: string, params: Record<string, unknown>): Promise<string> {
  const created = await api(base, 'POST', '/api/generations', key, { prompt: 'a cluster test', modelName: 'keyframe-local', ...params });
  if (created.status !== 200) throw new Error(`create generation on ${base}: ${created.status} ${JSON.stringify(created.body)}`);
  return created.body.generations[0].generation_id as string;
}

/** Polls GET /api/generations/:id on `base` every 250 ms until it is no longer generating (at most `seconds`). */
export async function waitSettled(base: string, key: string, id: string, seconds: number): Promise<any> {
  let body: any;
  for (let i = 0; i < seconds * 4; i++) {
    body = (await api(base, 'GET', `/api/generations/${id}`, key)).body;
    if (body.status !== 'generating') return body;
    await sleep(250);
  }
  throw new Error(`generation ${id} still ${body?.status} after ${seconds} s: ${JSON.stringify(body)}`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The PID `cluster.sh` recorded for a process (its file: PID and start time), or null when it is not running. */
export function pidOf(cluster: Cluster, name: string): number | null {
  try {
    return Number(readFileSync(path.join(cluster.dir, 'pids', name), 'utf8').split(' ')[0]);
  } catch {
    return null;
  }
}

/** Which cluster worker a generation's `worker_id` (`host:pid:random`, src/queue/in-process-queue.ts) names. */
export function workerNameOf(cluster: Cluster, workerId: string): string {
  const pid = Number(workerId.split(':')[1]);
  const name = cluster.env.CLUSTER_NAMES!.split(' ').find((n) => n.startsWith('worker') && pidOf(cluster, n) === pid);
  if (!name) throw new Error(`worker_id ${workerId}: no running cluster worker has pid ${pid}`);
  return name;
}

/** A process's log (one per process, in the state dir). */
export function logOf(cluster: Cluster, name: string): string {
  return readFileSync(path.join(cluster.dir, 'logs', `${name}.log`), 'utf8');
}

/** The pino lines of a log, parsed (the CLI's own lines and Node's warnings are not JSON). */
export function jsonLines(log: string): { time: number; msg: string; [k: string]: unknown }[] {
  return log
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { time: number; msg: string });
}

export interface JobSample {
  at: number;
  id: string;
  status: string;
  worker_id: string | null;
  started_at: string | null;
  attempts: number;
  error: string | null;
}

/** One run of a job: a claim by a worker, as the samples saw it. */
export interface Claim {
  workerId: string;
  startedAt: string;
}

/**
 * Reads the rows of `ids` every 100 ms from the database, the queue's only
 * record of who runs what, for tests that a job never ran in two places at
 * once and never ran again once settled. Bounded: stops itself after `maxMs`.
 */
export class JobSampler {
  readonly samples: JobSample[] = [];
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(
    private readonly db: Db,
    private readonly ids: string[],
    maxMs = 180_000,
  ) {
    const until = Date.now() + maxMs;
    this.loop = (async () => {
      while (!this.stopped && Date.now() < until) {
        await this.sampleOnce();
        await sleep(100);
      }
    })();
  }

  async sampleOnce(): Promise<JobSample[]> {
    const rows = await this.db
      .selectFrom('generations')
      .select(['id', 'status', 'worker_id', 'started_at', 'attempts', 'error'])
      .where('id', 'in', this.ids)
      .execute();
    const at = Date.now();
    const samples = rows.map((r) => ({ at, ...r, attempts: Number(r.attempts) }));
    this.samples.push(...samples);
    return samples;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await this.sampleOnce();
  }

  /** The claims of job `id`, in order: each distinct (worker_id, started_at) seen while it was generating. */
  claims(id: string): Claim[] {
    const claims: Claim[] = [];
    for (const s of this.samples.filter((x) => x.id === id && x.status === 'generating' && x.started_at !== null && x.worker_id !== null)) {
      const last = claims.at(-1);
      if (!last || last.workerId !== s.worker_id || last.startedAt !== s.started_at) claims.push({ workerId: s.worker_id!, startedAt: s.started_at! });
    }
    return claims;
  }

  /** The samples of job `id`, after the first that saw it settled, that differ from that one: it ran again. */
  changedAfterSettling(id: string): JobSample[] {
    const mine = this.samples.filter((x) => x.id === id);
    const first = mine.findIndex((x) => x.status !== 'generating');
    if (first < 0) return [];
    const settled = mine[first]!;
    const same = (x: JobSample) =>
      x.status === settled.status && x.worker_id === settled.worker_id && x.started_at === settled.started_at && x.attempts === settled.attempts;
    return mine.slice(first + 1).filter((x) => !same(x));
  }

  /** The newest sample of job `id`. */
  last(id: string): JobSample | undefined {
    return this.samples.filter((x) => x.id === id).at(-1);
  }
}

/** Waits (every 100 ms, at most `seconds`) until one of `ids` is running; returns its row. */
export async function waitRunning(sampler: JobSampler, seconds: number): Promise<JobSample> {
  for (let i = 0; i < seconds * 10; i++) {
    const running = (await sampler.sampleOnce()).find((s) => s.status === 'generating' && s.started_at !== null && s.worker_id !== null);
    if (running) return running;
    await sleep(100);
  }
  throw new Error(`no job started within ${seconds} s`);
}

declare module 'vitest' {
  export interface ProvidedContext {
    clusterEnv: Record<string, string> | null;
  }
}
