import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../../../src/db/database.js';
import type { JobConsumer, JobHandler, JobProducer } from '../../../src/queue/job-queue.js';
import { testDatabase, type TestDatabase } from '../../helpers/database.js';
import { queuedJob } from './jobs.js';

/** What the suite asks of a queue it makes; the kind adds its own settings (lease, poll, Redis). */
export interface SuiteQueueOptions {
  concurrency: number;
  maxAttempts: number;
  onError: (err: unknown, jobId: string) => void;
}

/** Both sides of a queue, and the worker id it writes on the rows it runs. */
export type SuiteQueue = JobProducer & JobConsumer & { readonly workerId: string };

/** Makes the queues of one test; each queue has connections of its own (its `db`, and its own Redis client). */
export interface QueueMaker {
  make(db: Db, options: SuiteQueueOptions): Promise<SuiteQueue>;
  /** Closes what `make` opened, after the suite stopped and closed every queue. */
  dispose(): Promise<void>;
}

/**
 * The behaviour every queue kind must have, against a fresh database of the vitest project's
 * dialect per test: exactly one start per job (also with a double enqueue and with two
 * consumers), a stop that hands a running job back uncounted, the fair order, a throwing
 * handler's job failed, and a job queued while no consumer runs started later.
 */
export function queueBehaviour(kind: string, makeQueues: () => Promise<QueueMaker>): void {
  describe(`queue behaviour: ${kind}`, () => {
    let database: TestDatabase;
    let db: Db;
    let maker: QueueMaker;
    let made: SuiteQueue[];
    let errors: unknown[];
    const onError = (err: unknown) => errors.push(err);

    beforeEach(async () => {
      database = await testDatabase(`queue-${kind}`);
      db = await database.open();
      const now = new Date().toISOString();
      for (const id of ['a', 'b']) await db.insertInto('users').values({ id, webhook_secret: 'whsec_x', created_at: now }).execute();
      maker = await makeQueues();
      made = [];
      errors = [];
    });

    afterEach(async () => {
      await Promise.allSettled(made.map(async (q) => (await q.stop(), await q.close())));
      await maker.dispose();
      await database.dispose();
    });

    /** A queue on a connection of its own (the first one on the test's `db`). */
    async function queue(concurrency: number, conn?: Db): Promise<SuiteQueue> {
      const q = await maker.make(conn ?? db, { concurrency, maxAttempts: 2, onError });
      made.push(q);
      return q;
    }

    /** Inserts `n` queued jobs of `user`, one millisecond apart from `from`, without enqueueing them. */
    async function insertJobs(prefix: string, user: string, n: number, from = Date.now() - 60_000): Promise<string[]> {
      const rows = Array.from({ length: n }, (_, i) => queuedJob(`${prefix}-${String(i).padStart(4, '0')}`, user, new Date(from + i)));
      for (let i = 0; i < rows.length; i += 100) await db.insertInto('generations').values(rows.slice(i, i + 100)).execute();
      return rows.map((r) => r.id);
    }

    const countWhere = async (status: 'generating' | 'completed' | 'failed') =>
      Number((await db.selectFrom('generations').select(sql<number>`count(*)`.as('n')).where('status', '=', status).executeTakeFirstOrThrow()).n);
    const rowOf = (id: string) =>
      db.selectFrom('generations').select(['status', 'attempts', 'worker_id', 'started_at', 'error']).where('id', '=', id).executeTakeFirstOrThrow();
    const once = (starts: Map<string, number>) => [...starts.entries()].filter(([, n]) => n !== 1);

    it('runs each enqueued job exactly once', async () => {
      const ids = await insertJobs('j', 'a', 12);
      const starts = new Map<string, number>();
      const q = await queue(3);
      await q.start(countingHandler(db, starts).handler);
      for (const id of ids) await q.enqueue(id);
      await until(async () => (await countWhere('completed')) === ids.length, 'all jobs');
      await q.stop();
      expect([...starts.keys()].sort()).toEqual(ids);
      expect(once(starts)).toEqual([]);
      expect(await db.selectFrom('generations').select('attempts').where('attempts', '!=', 1).execute()).toEqual([]);
      expect(errors).toEqual([]);
    });

    it('runs a job enqueued twice once, and an enqueue after it settled runs nothing', async () => {
      const [dup] = await insertJobs('dup', 'a', 1);
      const starts = new Map<string, number>();
      const q = await queue(1);
      await q.enqueue(dup!);
      await q.enqueue(dup!);
      await q.start(countingHandler(db, starts).handler);
      await until(async () => (await rowOf(dup!)).status === 'completed', 'the job');
      await q.enqueue(dup!);
      // One consumer, one at a time, oldest first: once a later job ran, the third enqueue was dealt with.
      const [later] = await insertJobs('later', 'a', 1, Date.now());
      await q.enqueue(later!);
      await until(async () => (await rowOf(later!)).status === 'completed', 'the later job');
      await q.stop();
      expect(Object.fromEntries(starts)).toEqual({ [dup!]: 1, [later!]: 1 });
      expect(errors).toEqual([]);
    });

    it('two consumers on connections of their own share 40 jobs: each starts exactly once', async () => {
      const ids = await insertJobs('s', 'a', 40);
      const second = await database.open();
      const starts = new Map<string, number>();
      const q1 = await queue(2);
      const q2 = await queue(2, second);
      await Promise.all([q1.start(countingHandler(db, starts).handler), q2.start(countingHandler(second, starts).handler)]);
      for (const [i, id] of ids.entries()) await (i % 2 ? q2 : q1).enqueue(id);
      await until(async () => (await countWhere('completed')) === ids.length, 'all 40 jobs');
      await Promise.all([q1.stop(), q2.stop()]);
      expect([...starts.keys()].sort()).toEqual(ids);
      expect(once(starts)).toEqual([]);
      const workers = new Set((await db.selectFrom('generations').select('worker_id').execute()).map((r) => r.worker_id));
      expect([...workers].every((w) => w === q1.workerId || w === q2.workerId)).toBe(true);
      expect(errors).toEqual([]);
    });

    it('stop() hands a running job back, not failed and not counted, and another consumer runs it to completion', async () => {
      const [id] = await insertJobs('h', 'a', 1);
      const second = await database.open();
      const starts = new Map<string, number>();
      const held = countingHandler(db, starts, false);
      const q1 = await queue(1);
      await q1.start(held.handler);
      await q1.enqueue(id!);
      await until(() => starts.get(id!) === 1, 'the first consumer to start the job');
      expect(await rowOf(id!)).toMatchObject({ status: 'generating', attempts: 1, worker_id: q1.workerId });
      const q2 = await queue(1, second);
      await q2.start(countingHandler(second, starts).handler);
      await q1.stop();
      await until(async () => (await rowOf(id!)).status === 'completed', 'the second consumer to run it');
      await q2.stop();
      expect(held.aborts).toEqual([id]);
      expect(held.abandoned).toEqual([]);
      expect(starts.get(id!)).toBe(2);
      expect(await rowOf(id!)).toMatchObject({ status: 'completed', attempts: 1, worker_id: q2.workerId, error: null });
      expect(errors).toEqual([]);
    });

    it('user A queues 200 jobs, user B one after them: B starts no later than second', async () => {
      const aJobs = await insertJobs('a', 'a', 200);
      const [bJob] = await insertJobs('b', 'b', 1, Date.now() - 30_000);
      const starts = new Map<string, number>();
      const order: string[] = [];
      const q = await queue(1);
      for (const id of [...aJobs, bJob!]) await q.enqueue(id);
      await q.start(countingHandler(db, starts, true, order).handler);
      await until(async () => (await countWhere('completed')) === 201, 'all 201 jobs');
      await q.stop();
      expect(order).toHaveLength(201);
      expect(order.indexOf(bJob!)).toBeLessThanOrEqual(1);
      // A's own jobs still run oldest first.
      const aOrder = order.filter((id) => id.startsWith('a-'));
      expect(aOrder).toEqual([...aOrder].sort());
      expect(errors).toEqual([]);
    });

    it('fails the job of a handler that throws, instead of leaving it generating', async () => {
      const [id] = await insertJobs('boom', 'a', 1);
      const abandoned: [string, string][] = [];
      const handler: JobHandler = {
        run: async () => {
          throw new Error('database went away');
        },
        abandon: async (jobId, reason) => {
          abandoned.push([jobId, reason]);
          await db.updateTable('generations').set({ status: 'failed', error: reason }).where('id', '=', jobId).execute();
        },
      };
      const q = await queue(1);
      await q.start(handler);
      await q.enqueue(id!);
      await until(async () => (await rowOf(id!)).status === 'failed', 'the job to fail');
      await q.stop();
      expect(abandoned).toEqual([[id, 'Generation failed: internal error']]);
      expect(errors.map(String)).toEqual(['Error: database went away']);
    });

    it('a job enqueued while no consumer runs stays queued, and runs once a consumer starts', async () => {
      const [id] = await insertJobs('later', 'a', 1);
      const producer = await queue(1);
      await producer.enqueue(id!);
      expect(await rowOf(id!)).toMatchObject({ status: 'generating', started_at: null, attempts: 0 });
      const second = await database.open();
      const starts = new Map<string, number>();
      const consumer = await queue(1, second);
      await consumer.start(countingHandler(second, starts).handler);
      await until(async () => (await rowOf(id!)).status === 'completed', 'the consumer to run it');
      await consumer.stop();
      expect(starts.get(id!)).toBe(1);
      expect(await rowOf(id!)).toMatchObject({ attempts: 1, worker_id: consumer.workerId });
      expect(errors).toEqual([]);
    });
  });
}

/**
 * Counts the starts of each job id (and their order); each job is held until aborted when
 * `open` is false, else completed through `conn` after a few milliseconds. Records the jobs
 * whose run saw its signal abort, and the jobs abandoned.
 */
export function countingHandler(conn: Db, starts: Map<string, number>, open = true, order: string[] = []) {
  const aborts: string[] = [];
  const abandoned: string[] = [];
  const handler: JobHandler = {
    async run(id, signal) {
      starts.set(id, (starts.get(id) ?? 0) + 1);
      order.push(id);
      if (!open) {
        await new Promise<void>((_resolve, reject) =>
          signal.addEventListener('abort', () => {
            aborts.push(id);
            reject(signal.reason);
          }),
        );
      }
      await new Promise((r) => setTimeout(r, 2));
      await conn.updateTable('generations').set({ status: 'completed' }).where('id', '=', id).where('status', '=', 'generating').execute();
    },
    async abandon(id, reason) {
      abandoned.push(id);
      await conn.updateTable('generations').set({ status: 'failed', error: reason }).where('id', '=', id).execute();
    },
  };
  return { handler, aborts, abandoned };
}

/** Polls `condition` every 25 ms, failing after `tries` (default: 30 s). */
export async function until(condition: () => Promise<boolean> | boolean, what: string, tries = 1200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}
