import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Queue } from 'bullmq';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import { BullmqQueue, GENERATIONS_QUEUE, type BullmqQueueOptions } from '../../src/queue/bullmq-queue.js';
import type { JobHandler } from '../../src/queue/job-queue.js';
import { openRedis, type RedisHandle } from '../../src/redis/connection.js';
import { childTargetOf, killChildren, spawnTsChild } from '../helpers/child-process.js';
import { testDatabase, type TestDatabase } from '../helpers/database.js';
import { redisForTests, testRedis, type TestRedis } from '../helpers/redis.js';
import { queuedJob } from './support/jobs.js';
import { countingHandler, until } from './support/queue-behaviour.js';

/**
 * What only the BullMQ queue has (the shared behaviour is test/queue/queue-behaviour.test.ts):
 * a consumer in a real child process SIGKILLed while it runs a job (short leases: 1.5 s), a
 * lock taken away from a running job, and the reconcile pass between rows and Redis. Real
 * Redis (a fresh key prefix per test), a fresh database of the project's dialect.
 */
const REDIS = await redisForTests('bullmq queue');
const LEASE_MS = 1_500;

describe.skipIf(REDIS.skip)('BullmqQueue', () => {
  let database: TestDatabase;
  let db: Db;
  let redis: TestRedis;
  let handles: RedisHandle[];
  let queues: BullmqQueue[];
  let errors: unknown[];

  beforeEach(async () => {
    database = await testDatabase('bullmq');
    db = await database.open();
    await db.insertInto('users').values({ id: 'u', webhook_secret: 'whsec_x', created_at: new Date().toISOString() }).execute();
    redis = await testRedis('bullmq');
    handles = [];
    queues = [];
    errors = [];
  });

  afterEach(async () => {
    killChildren();
    await Promise.allSettled(queues.map(async (q) => (await q.stop(), await q.close())));
    await Promise.allSettled(handles.map((h) => h.close()));
    await redis.dispose();
    await database.dispose();
  });

  async function handle(): Promise<RedisHandle> {
    const h = await openRedis(redis.config, { onError: (err) => errors.push(err) });
    handles.push(h);
    return h;
  }

  async function queue(options: Partial<BullmqQueueOptions> = {}): Promise<BullmqQueue> {
    const q = new BullmqQueue(db, {
      redis: await handle(),
      concurrency: 1,
      maxAttempts: 2,
      leaseMs: LEASE_MS,
      reconcileMs: 600_000,
      onError: (err) => errors.push(err),
      ...options,
    });
    queues.push(q);
    return q;
  }

  /** A queued row created a minute ago (old enough for reconcile), not enqueued. */
  async function addJob(id: string): Promise<string> {
    await db.insertInto('generations').values(queuedJob(id, 'u', new Date(Date.now() - 60_000))).execute();
    return id;
  }

  const rowOf = (id: string) =>
    db.selectFrom('generations').select(['status', 'attempts', 'worker_id', 'error']).where('id', '=', id).executeTakeFirstOrThrow();

  /** A BullMQ Queue on the test's prefix, for looking at what Redis holds. */
  async function inspect<T>(look: (q: Queue) => Promise<T>): Promise<T> {
    const q = new Queue(GENERATIONS_QUEUE, { connection: (await handle()).client, prefix: redis.config.prefix });
    try {
      return await look(q);
    } finally {
      await q.close();
    }
  }

  /** Starts test/queue/support/consumer-child.ts on BullMQ; resolves once it started `jobId`. */
  async function childRunning(jobId: string, maxAttempts: number) {
    const startsFile = path.join(database.dataDir, 'child-starts.log');
    const child = spawnTsChild('test/queue/support/consumer-child.ts', {
      KEYFRAME_CHILD_TARGET: JSON.stringify(childTargetOf(database)),
      KEYFRAME_CHILD_STARTS: startsFile,
      KEYFRAME_CHILD_REDIS: JSON.stringify(redis.config),
      KEYFRAME_CHILD_LEASE_MS: String(LEASE_MS),
      KEYFRAME_CHILD_MAX_ATTEMPTS: String(maxAttempts),
    });
    const starts = () => (existsSync(startsFile) ? readFileSync(startsFile, 'utf8').split('\n').filter(Boolean) : []);
    await until(() => starts().includes(jobId) || child.child.exitCode !== null, 'the child to start the job');
    expect(child.child.exitCode, child.err()).toBeNull();
    return { workerId: /ready (\S+)/.exec(child.out())?.[1], starts, kill: child.kill };
  }

  it('a consumer SIGKILLed while it runs a job: a live one runs it again once the lock lapses, two starts in all', async () => {
    const id = await addJob('killed');
    const q = await queue();
    await q.enqueue(id);
    const child = await childRunning(id, 2);
    const starts = new Map<string, number>();
    await q.start(countingHandler(db, starts).handler);
    // The child lives and renews its lock: for two leases the job stays its own.
    await new Promise((r) => setTimeout(r, 2 * LEASE_MS));
    expect(starts.has(id)).toBe(false);
    expect(await rowOf(id)).toMatchObject({ status: 'generating', attempts: 1, worker_id: child.workerId });

    await child.kill();
    await until(async () => (await rowOf(id)).status === 'completed', 'the job to run again here');
    await q.stop();
    expect(child.starts().filter((s) => s === id).length + (starts.get(id) ?? 0)).toBe(2);
    expect(await rowOf(id)).toMatchObject({ status: 'completed', attempts: 2, worker_id: q.workerId });
    expect(errors).toEqual([]);
  });

  it('with maxAttempts 1, the job of a SIGKILLed consumer is failed as interrupted, never run again', async () => {
    const id = await addJob('once');
    const q = await queue({ maxAttempts: 1 });
    await q.enqueue(id);
    const child = await childRunning(id, 1);
    const starts = new Map<string, number>();
    const counting = countingHandler(db, starts);
    await q.start(counting.handler);
    await child.kill();
    await until(async () => (await rowOf(id)).status === 'failed', 'the job to be failed');
    await q.stop();
    expect(await rowOf(id)).toMatchObject({ attempts: 1, error: 'Generation interrupted 1 time(s) (its worker stopped); gave up' });
    expect(starts.has(id)).toBe(false);
    expect(counting.abandoned).toEqual([id]);
    expect(errors).toEqual([]);
  });

  it('aborts a running job whose lock another holds, without failing it; it runs again once that lock lapses, never twice at once', async () => {
    const id = await addJob('stolen');
    const reasons: unknown[] = [];
    let running = 0;
    let maxRunning = 0;
    let runs = 0;
    const handler: JobHandler = {
      async run(jobId, signal) {
        runs += 1;
        running += 1;
        maxRunning = Math.max(maxRunning, running);
        try {
          if (runs === 1) {
            await new Promise<void>((_resolve, reject) =>
              signal.addEventListener('abort', () => {
                reasons.push(signal.reason);
                reject(signal.reason);
              }),
            );
          }
          await db.updateTable('generations').set({ status: 'completed' }).where('id', '=', jobId).execute();
        } finally {
          running -= 1;
        }
      },
      abandon: async () => {
        throw new Error('a job whose lock was lost must not be abandoned');
      },
    };
    const q = await queue({ concurrency: 2 });
    await q.start(handler);
    await q.enqueue(id);
    await until(() => runs === 1, 'the job to start');
    // What another consumer's lock looks like: a token not ours, lapsing in two leases.
    await redis.client.set(`${redis.config.prefix}:${GENERATIONS_QUEUE}:${id}:lock`, 'someone-else', 'PX', 2 * LEASE_MS, 'XX');
    await until(() => reasons.length === 1, 'the run to be aborted');
    expect(String(reasons[0])).toMatch(/lock on job stolen lost/);
    await until(async () => (await rowOf(id)).status === 'completed', 'the job to run again');
    await q.stop();
    expect(runs).toBe(2);
    expect(maxRunning).toBe(1);
    expect(await rowOf(id)).toMatchObject({ attempts: 2, worker_id: q.workerId });
    // BullMQ reports the renewal it could not make.
    expect(errors.map(String).filter((e) => !/could not renew lock for job stolen/.test(e))).toEqual([]);
  });

  it('stop() leaves the job in Redis due again, neither failed nor counted as a stall', async () => {
    const id = await addJob('handed-back');
    const starts = new Map<string, number>();
    const q = await queue();
    await q.start(countingHandler(db, starts, false).handler);
    await q.enqueue(id);
    await until(() => starts.get(id) === 1, 'the job to start');
    await q.stop();
    const { state, job } = await inspect(async (bq) => ({ state: await bq.getJobState(id), job: await bq.getJob(id) }));
    expect(['delayed', 'prioritized', 'waiting']).toContain(state);
    expect(job).toMatchObject({ stalledCounter: 0, attemptsMade: 0 });
    expect(await rowOf(id)).toMatchObject({ status: 'generating', attempts: 0, worker_id: null });
    expect(errors).toEqual([]);
  });

  it('reconcile enqueues a queued row that Redis does not know, once; it then runs', async () => {
    const id = await addJob('never-enqueued');
    const q = await queue();
    expect(await q.reconcile()).toEqual({ requeued: 1, abandoned: 0 });
    expect(await q.reconcile()).toEqual({ requeued: 0, abandoned: 0 });
    const starts = new Map<string, number>();
    await q.start(countingHandler(db, starts).handler);
    await until(async () => (await rowOf(id)).status === 'completed', 'the job to run');
    await q.stop();
    expect(starts.get(id)).toBe(1);
    expect(errors).toEqual([]);
  });

  it('reconcile enqueues again the rows whose BullMQ keys were lost', async () => {
    const ids = [await addJob('lost-1'), await addJob('lost-2')];
    const q = await queue();
    for (const id of ids) await q.enqueue(id);
    const keys = await redis.client.keys(`${redis.config.prefix}:*`);
    expect(keys.length).toBeGreaterThan(0);
    await redis.client.del(...keys);
    expect(await q.reconcile()).toEqual({ requeued: 2, abandoned: 0 });
    const starts = new Map<string, number>();
    await q.start(countingHandler(db, starts).handler);
    await until(async () => (await rowOf(ids[1]!)).status === 'completed' && (await rowOf(ids[0]!)).status === 'completed', 'both jobs');
    await q.stop();
    expect(Object.fromEntries(starts)).toEqual({ 'lost-1': 1, 'lost-2': 1 });
    expect(errors).toEqual([]);
  });

  it('a starting consumer reconciles at once: a row never enqueued runs', async () => {
    const id = await addJob('from-before');
    const q = await queue();
    const starts = new Map<string, number>();
    await q.start(countingHandler(db, starts).handler);
    await until(async () => (await rowOf(id)).status === 'completed', 'the job to run');
    await q.stop();
    expect(starts.get(id)).toBe(1);
  });

  it('reconcile fails the row of a failed BullMQ job that is still generating, and removes the job', async () => {
    const id = await addJob('abandon-lost');
    let abandonCalls = 0;
    const handler: JobHandler = {
      run: async () => {
        throw new Error('handler broke');
      },
      abandon: async (jobId, reason) => {
        abandonCalls += 1;
        // The first abandon finds the database away: the row stays generating, the BullMQ job failed.
        if (abandonCalls === 1) throw new Error('database away');
        await db.updateTable('generations').set({ status: 'failed', error: reason }).where('id', '=', jobId).execute();
      },
    };
    const q = await queue();
    await q.start(handler);
    await q.enqueue(id);
    await until(async () => (await inspect((bq) => bq.getJobState(id))) === 'failed', 'the BullMQ job to fail');
    expect(await rowOf(id)).toMatchObject({ status: 'generating' });
    expect(await q.reconcile()).toEqual({ requeued: 0, abandoned: 1 });
    await q.stop();
    expect(await rowOf(id)).toMatchObject({ status: 'failed', error: 'Generation failed: internal error' });
    expect(await inspect((bq) => bq.getJobState(id))).toBe('unknown');
    expect(errors.map(String)).toEqual(['Error: handler broke', 'Error: database away']);
  });
});
