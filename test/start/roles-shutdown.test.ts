import { execFile, spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Db } from '../../src/db/database.js';
import { freePort } from '../../src/free-port.js';
import { BIN, ensureBuilt } from '../helpers/build.js';
import { testDatabase, TEST_DIALECT, type TestDatabase } from '../helpers/database.js';
import { redisForTests, testRedis, type TestRedis } from '../helpers/redis.js';
import { assertRgwReachable, removeBucket, rgwForTests, s3ServerEnv, uniqueBucketName } from '../helpers/rgw.js';

// Roles and the orderly shutdown, on real `keyframe` processes (dist/), real signals and real HTTP on loopback.

const run = promisify(execFile);
const rgw = await rgwForTests('roles and shutdown test');
const redis = await redisForTests('roles and shutdown test (queue on Redis)');
const redises: TestRedis[] = [];

let database: TestDatabase;
let reader: Db;
let baseEnv: NodeJS.ProcessEnv;
let key: string;
const children = new Set<ChildProcess>();
const buckets: string[] = [];

interface Proc {
  child: ChildProcess;
  stderr: () => string;
  /** Resolves with the exit code (null when killed by a signal) and how long after `since` it came. */
  exited: Promise<{ code: number | null; at: number }>;
}

function spawnKeyframe(args: string[], env: NodeJS.ProcessEnv): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  // Both streams: the CLI's lines go to stderr, the logger's JSON lines to stdout.
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
    child.once('exit', (code) => {
      children.delete(child);
      resolve({ code, at: Date.now() });
    }),
  );
  return { child, stderr: () => stderr, exited };
}

/** `keyframe serve [...]` on `port`; resolves once /healthz answers (every 100 ms, 30 s at most). */
async function serve(port: number, args: string[] = [], env: Record<string, string> = {}): Promise<Proc> {
  const proc = spawnKeyframe(['serve', ...args], { ...baseEnv, PORT: String(port), ...env });
  for (let i = 0; i < 300; i++) {
    if (proc.child.exitCode !== null) throw new Error(`keyframe serve exited: ${proc.stderr()}`);
    if (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)) return proc;
    await sleep(100);
  }
  throw new Error(`keyframe serve did not answer: ${proc.stderr()}`);
}

/** Sends `signal` and waits (at most `withinMs`) for the exit; its code and how long it took. */
async function signalAndWait(proc: Proc, signal: NodeJS.Signals, withinMs = 15_000): Promise<{ code: number | null; ms: number }> {
  const sent = Date.now();
  proc.child.kill(signal);
  const timeout = sleep(withinMs).then(() => null);
  const done = await Promise.race([proc.exited, timeout]);
  if (done === null) throw new Error(`no exit within ${withinMs} ms of ${signal}: ${proc.stderr()}`);
  return { code: done.code, ms: done.at - sent };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function api(port: number, method: string, pathname: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://127.0.0.1:${port}${pathname}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

async function jobRow(id: string) {
  return reader.selectFrom('generations').select(['status', 'started_at', 'attempts', 'error']).where('id', '=', id).executeTakeFirstOrThrow();
}

async function createGeneration(port: number, params: Record<string, unknown>): Promise<string> {
  const created = await api(port, 'POST', '/api/generations', { prompt: 'a roles test', modelName: 'keyframe-local', ...params });
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  return created.body.generations[0].generation_id as string;
}

async function waitSettled(port: number, id: string, seconds: number): Promise<any> {
  let body: any;
  for (let i = 0; i < seconds * 4; i++) {
    body = (await api(port, 'GET', `/api/generations/${id}`)).body;
    if (body.status !== 'generating') return body;
    await sleep(250);
  }
  return body;
}

/** An upload PUT that sends a few bytes and then nothing: a request in flight for as long as the test wants. */
async function requestInFlight(port: number): Promise<http.ClientRequest> {
  const presigned = await api(port, 'POST', '/api/s3/presign-upload', { kind: 'upload', contentType: 'image/png', contentLength: 100_000 });
  expect(presigned.status).toBe(200);
  const url = new URL(presigned.body.upload_url);
  const req = http.request(url, { method: 'PUT', headers: { 'content-type': 'image/png', 'content-length': '100000' } });
  req.on('error', () => {});
  req.write(Buffer.alloc(10));
  await sleep(300);
  return req;
}

beforeAll(async () => {
  ensureBuilt();
  database = await testDatabase('roles');
  await database.migrate();
  reader = await database.secondConnection();
  baseEnv = { ...process.env, HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...database.env };
  const { stdout } = await run(process.execPath, [BIN, 'keys', 'create', '--user', 'rhea', '--scope', 'generations:write', '--scope', 'templates:read'], { env: baseEnv });
  key = stdout.trim();
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await sleep(200);
  for (const bucket of buckets) await removeBucket(rgw, bucket).catch(() => {});
  for (const r of redises) await r.dispose();
  await database?.dispose();
});

describe('SIGTERM on keyframe serve', () => {
  it('exits 0 promptly when idle', async () => {
    const server = await serve(await freePort());
    const { code, ms } = await signalAndWait(server, 'SIGTERM');
    expect(code, server.stderr()).toBe(0);
    expect(ms).toBeLessThan(3000);
  });

  it('hands a running generation back (still generating, not failed) and a restarted server completes it', async () => {
    const port = await freePort();
    let server = await serve(port);
    // A long render, so that SIGTERM lands while it runs.
    const id = await createGeneration(port, { duration: '20s', resolution: '1080p' });
    for (let i = 0; i < 200 && (await jobRow(id)).started_at === null; i++) await sleep(50);
    expect((await jobRow(id)).started_at).not.toBeNull();

    const { code, ms } = await signalAndWait(server, 'SIGTERM');
    expect(code, server.stderr()).toBe(0);
    expect(ms).toBeLessThan(5000);
    const after = await jobRow(id);
    expect(after).toMatchObject({ status: 'generating', error: null });

    server = await serve(port);
    const final = await waitSettled(port, id, 120);
    expect(final.status, JSON.stringify(final)).toBe('completed');
    expect((await signalAndWait(server, 'SIGTERM')).code).toBe(0);
  });

  it('exits 1 when a request outlives KEYFRAME_SHUTDOWN_TIMEOUT_SECONDS', async () => {
    const port = await freePort();
    const server = await serve(port, [], { KEYFRAME_SHUTDOWN_TIMEOUT_SECONDS: '1' });
    const req = await requestInFlight(port);
    try {
      const { code, ms } = await signalAndWait(server, 'SIGTERM');
      expect(code).toBe(1);
      expect(ms).toBeGreaterThanOrEqual(900);
      expect(ms).toBeLessThan(4000);
      expect(server.stderr()).toContain('shutdown timed out');
    } finally {
      req.destroy();
    }
  });

  it('exits 1 at once on a second SIGTERM', async () => {
    const port = await freePort();
    const server = await serve(port);
    const req = await requestInFlight(port);
    try {
      server.child.kill('SIGTERM');
      await sleep(500);
      // The in-flight request holds the orderly shutdown (30 s timeout): still running.
      expect(server.child.exitCode).toBeNull();
      const { code, ms } = await signalAndWait(server, 'SIGTERM');
      expect(code).toBe(1);
      expect(ms).toBeLessThan(2000);
      expect(server.stderr()).toContain('second signal');
    } finally {
      req.destroy();
    }
  });
});

/** The queue a split-role cluster runs on: the database's, or BullMQ on Redis (KEYFRAME_REDIS_URL). */
const QUEUES = [
  { queue: 'database', skip: rgw.skip },
  { queue: 'redis', skip: rgw.skip || redis.skip },
] as const;

describe.each(QUEUES)('split roles on S3, queue on the $queue: serve --role api and keyframe worker', ({ queue, skip }) => {
  /** What every node of this test's cluster shares; a fresh bucket (and Redis prefix) per test. */
  async function clusterEnv(port: number): Promise<Record<string, string>> {
    assertRgwReachable(rgw);
    const bucket = uniqueBucketName('roles');
    buckets.push(bucket);
    let queueEnv: Record<string, string> = {};
    if (queue === 'redis') {
      const r = await testRedis('roles');
      redises.push(r);
      queueEnv = r.env;
    }
    return {
      ...s3ServerEnv(rgw, bucket),
      ...queueEnv,
      // On PostgreSQL a split role needs the cluster's shared settings.
      KEYFRAME_SIGNING_SECRET: 'a-shared-signing-secret-of-32-characters',
      KEYFRAME_PUBLIC_URL: `http://127.0.0.1:${port}`,
    };
  }

  it.skipIf(skip)('the api process never starts a job; a worker started later completes it; both exit 0 on SIGTERM', async () => {
    const port = await freePort();
    const shared = await clusterEnv(port);
    const apiNode = await serve(port, ['--role', 'api'], shared);
    expect(apiNode.stderr()).toContain('keyframe API listening');
    const id = await createGeneration(port, { duration: '1s', resolution: '480p' });
    // No job ever starts in the api process.
    await sleep(1500);
    expect(await jobRow(id)).toMatchObject({ status: 'generating', started_at: null, attempts: 0 });
    expect((await api(port, 'GET', `/api/generations/${id}`)).body.status).toBe('generating');

    const worker = spawnKeyframe(['worker'], { ...baseEnv, ...shared, PORT: '0' });
    const final = await waitSettled(port, id, 90);
    expect(final.status, `${JSON.stringify(final)} ${worker.stderr()}`).toBe('completed');
    expect(worker.stderr()).toContain('keyframe worker running generation jobs');
    if (queue === 'redis') {
      // The job went through BullMQ, under this test's prefix (the queue named `generations`).
      const r = redises.at(-1)!;
      expect(await r.client.keys(`${r.config.prefix}:generations:*`)).not.toHaveLength(0);
    }

    expect((await signalAndWait(worker, 'SIGTERM')).code, worker.stderr()).toBe(0);
    expect((await signalAndWait(apiNode, 'SIGTERM')).code, apiNode.stderr()).toBe(0);
  });

  it.skipIf(skip)('SIGTERM of a worker mid-job hands the job back (not failed, no attempt counted); another worker completes it', async () => {
    const port = await freePort();
    const shared = await clusterEnv(port);
    const apiNode = await serve(port, ['--role', 'api'], shared);
    const first = spawnKeyframe(['worker'], { ...baseEnv, ...shared, PORT: '0' });
    // A long render, so that SIGTERM lands while it runs.
    const id = await createGeneration(port, { duration: '20s', resolution: '1080p' });
    for (let i = 0; i < 400 && (await jobRow(id)).started_at === null; i++) await sleep(50);
    expect((await jobRow(id)).started_at, first.stderr()).not.toBeNull();

    expect((await signalAndWait(first, 'SIGTERM')).code, first.stderr()).toBe(0);
    expect(await jobRow(id)).toMatchObject({ status: 'generating', started_at: null, attempts: 0, error: null });

    const second = spawnKeyframe(['worker'], { ...baseEnv, ...shared, PORT: '0' });
    const final = await waitSettled(port, id, 120);
    expect(final.status, `${JSON.stringify(final)} ${second.stderr()}`).toBe('completed');
    expect((await jobRow(id)).attempts).toBe(1);
    expect((await signalAndWait(second, 'SIGTERM')).code, second.stderr()).toBe(0);
    expect((await signalAndWait(apiNode, 'SIGTERM')).code, apiNode.stderr()).toBe(0);
  });
});

it('runs on the dialect of the vitest project', () => {
  expect(database.dialect).toBe(TEST_DIALECT);
});
