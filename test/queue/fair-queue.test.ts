import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import { InProcessQueue, nextJobQuery } from '../../src/queue/in-process-queue.js';
import type { JobHandler } from '../../src/queue/job-queue.js';
import { TEST_DIALECT, testDatabase, type TestDatabase } from '../helpers/database.js';
import { queuedJob } from './support/jobs.js';

/**
 * Fair scheduling (issue 16, finding 2): one user's backlog must not starve
 * another user's job. A real, fresh database of the project's dialect for each
 * test (test/helpers/database.ts), the real queue, a handler that records the
 * order in which jobs start.
 */
let database: TestDatabase;
let db: Db;

beforeEach(async () => {
  database = await testDatabase('fair-queue');
  db = await database.open();
  const now = new Date().toISOString();
  for (const id of ['a', 'b', 'c']) await db.insertInto('users').values({ id, webhook_secret: 'whsec_x', created_at: now }).execute();
});

afterEach(async () => {
  await db.destroy();
  await database.dispose();
});

/** Queues `n` jobs of `user`, created in order one millisecond apart starting at `from` (ms since epoch). */
async function queueJobs(user: string, n: number, from: number): Promise<string[]> {
  const rows = Array.from({ length: n }, (_, i) => queuedJob(`${user}-${String(i).padStart(4, '0')}`, user, new Date(from + i)));
  for (let i = 0; i < rows.length; i += 100) await db.insertInto('generations').values(rows.slice(i, i + 100)).execute();
  return rows.map((r) => r.id);
}

/** Settles every job it is given, recording the start order; `gate` holds each job until released. */
function orderRecorder() {
  const started: string[] = [];
  let waiters: (() => void)[] = [];
  let open = false;
  const handler: JobHandler = {
    async run(id) {
      started.push(id);
      if (!open) await new Promise<void>((resolve) => waiters.push(resolve));
      await db.updateTable('generations').set({ status: 'completed' }).where('id', '=', id).execute();
    },
    async abandon(id, reason) {
      await db.updateTable('generations').set({ status: 'failed', error: reason }).where('id', '=', id).execute();
    },
  };
  return {
    handler,
    started,
    release() {
      open = true;
      for (const w of waiters) w();
      waiters = [];
    },
  };
}

async function until(condition: () => Promise<boolean> | boolean, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const remaining = async () =>
  Number((await db.selectFrom('generations').select(sql<number>`count(*)`.as('n')).where('status', '=', 'generating').executeTakeFirstOrThrow()).n);

describe('fair queue', () => {
  it('user A queues 200 jobs, user B one after them: B starts no later than second', async () => {
    const t0 = Date.now() - 60_000;
    await queueJobs('a', 200, t0);
    const [bJob] = await queueJobs('b', 1, t0 + 1000);
    const rec = orderRecorder();
    rec.release();
    const queue = new InProcessQueue(db, { concurrency: 1, maxAttempts: 2, onError: (err) => { throw err; } });
    await queue.start(rec.handler);
    await until(async () => (await remaining()) === 0, 'all 201 jobs');
    await queue.stop();
    expect(rec.started).toHaveLength(201);
    expect(rec.started.indexOf(bJob!)).toBeLessThanOrEqual(1);
    // A's own jobs still run oldest first.
    const aOrder = rec.started.filter((id) => id.startsWith('a-'));
    expect(aOrder).toEqual([...aOrder].sort());
  });

  it('B queued while A’s backlog is running goes next, after only the A job already running', async () => {
    const t0 = Date.now() - 60_000;
    await queueJobs('a', 200, t0);
    const rec = orderRecorder();
    const queue = new InProcessQueue(db, { concurrency: 1, maxAttempts: 2, onError: (err) => { throw err; } });
    await queue.start(rec.handler);
    await until(() => rec.started.length === 1, 'the first A job to start');
    const [bJob] = await queueJobs('b', 1, Date.now());
    await queue.enqueue(bJob!);
    rec.release();
    await until(async () => (await remaining()) === 0, 'all 201 jobs');
    await queue.stop();
    expect(rec.started[0]).toBe('a-0000');
    expect(rec.started[1]).toBe(bJob);
  });

  it('three users with backlogs are served in turn', async () => {
    const t0 = Date.now() - 60_000;
    await queueJobs('a', 20, t0);
    await queueJobs('b', 3, t0 + 100);
    await queueJobs('c', 3, t0 + 200);
    const rec = orderRecorder();
    rec.release();
    const queue = new InProcessQueue(db, { concurrency: 1, maxAttempts: 2, onError: (err) => { throw err; } });
    await queue.start(rec.handler);
    await until(async () => (await remaining()) === 0, 'all jobs');
    await queue.stop();
    // Every B and C job starts within the first 9: A's backlog never holds them up for more than a turn each.
    const firstNine = rec.started.slice(0, 9);
    expect(firstNine.filter((id) => id.startsWith('b-'))).toHaveLength(3);
    expect(firstNine.filter((id) => id.startsWith('c-'))).toHaveLength(3);
  });

  it('two queues on one database never run one job twice', async () => {
    const t0 = Date.now() - 60_000;
    const ids = [...(await queueJobs('a', 30, t0)), ...(await queueJobs('b', 30, t0 + 100))];
    const second = await database.open();
    try {
      const recA = orderRecorder();
      const recB = orderRecorder();
      recA.release();
      recB.release();
      const q1 = new InProcessQueue(db, { concurrency: 2, maxAttempts: 2, onError: (err) => { throw err; } });
      const q2 = new InProcessQueue(second, { concurrency: 2, maxAttempts: 2, onError: (err) => { throw err; } });
      await Promise.all([q1.start(recA.handler), q2.start(recB.handler)]);
      await until(async () => (await remaining()) === 0, 'all jobs');
      await Promise.all([q1.stop(), q2.stop()]);
      const all = [...recA.started, ...recB.started];
      expect(all.sort()).toEqual([...ids].sort());
    } finally {
      await second.destroy();
    }
  });

  // SQLite's EXPLAIN QUERY PLAN and its index names; PostgreSQL's plan of the same query is checked with EXPLAIN by its own test.
  it.skipIf(TEST_DIALECT !== 'sqlite')('choosing the next job reads indexes only (no table scan)', async () => {
    await queueJobs('a', 50, Date.now() - 60_000);
    const { sql: text, parameters } = nextJobQuery(db).compile();
    let i = 0;
    const inlined = text.replace(/\?/g, () => {
      const p = parameters[i++];
      return typeof p === 'number' ? String(p) : `'${String(p)}'`;
    });
    const plan = (await sql.raw<{ detail: string }>(`explain query plan ${inlined}`).execute(db)).rows.map((r) => r.detail);
    // e.g. SEARCH generations USING INDEX generations_queue (status=? AND started_at=? AND user_id=?);
    //      SEARCH q USING COVERING INDEX generations_queue (status=? AND started_at=?);
    //      SEARCH s USING COVERING INDEX generations_user_started (user_id=?)
    expect(plan.filter((d) => /^SCAN (generations|q|s)\b/.test(d)), plan.join('; ')).toEqual([]);
    expect(plan.some((d) => /SEARCH q USING COVERING INDEX generations_queue/.test(d)), plan.join('; ')).toBe(true);
    expect(plan.some((d) => /SEARCH s USING COVERING INDEX generations_user_started/.test(d)), plan.join('; ')).toBe(true);
    expect(plan.some((d) => /SEARCH generations USING INDEX generations_queue/.test(d)), plan.join('; ')).toBe(true);
  });
});
