import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { changeFeedOf, type Db } from '../../src/db/database.js';
import type { PostgresFeedState } from '../../src/db/change-feed.js';
import { InProcessQueue } from '../../src/queue/in-process-queue.js';
import type { JobHandler } from '../../src/queue/job-queue.js';
import { childTargetOf, killChildren, spawnTsChild } from '../helpers/child-process.js';
import { TEST_DIALECT, testDatabase, type TestDatabase } from '../helpers/database.js';
import { queuedJob } from './support/jobs.js';

/**
 * Several consumers on one database (issue 12, item 2): two queues on two
 * connections of their own in this process, and a consumer in a real child
 * process that is SIGKILLed while it holds jobs. Every handler counts the
 * starts of each job id; no job may start twice, except once more after its
 * consumer died.
 */
let database: TestDatabase;
let db: Db;

beforeEach(async () => {
  database = await testDatabase('two-workers');
  db = await database.open();
  await db.insertInto('users').values({ id: 'u', webhook_secret: 'whsec_x', created_at: new Date().toISOString() }).execute();
});

afterEach(async () => {
  killChildren();
  await db.destroy();
  await database.dispose();
});

async function addJobs(prefix: string, n: number): Promise<string[]> {
  const t0 = Date.now() - 60_000;
  const rows = Array.from({ length: n }, (_, i) => queuedJob(`${prefix}-${String(i).padStart(3, '0')}`, 'u', new Date(t0 + i)));
  await db.insertInto('generations').values(rows).execute();
  return rows.map((r) => r.id);
}

/** Counts starts per job id; each job is held until `release()` (or not at all when `open`), then completed through `conn`. */
function countingHandler(conn: Db, starts: Map<string, number>, open = true) {
  let waiters: (() => void)[] = [];
  let isOpen = open;
  const handler: JobHandler = {
    async run(id, signal) {
      starts.set(id, (starts.get(id) ?? 0) + 1);
      if (!isOpen) {
        await new Promise<void>((resolve, reject) => {
          waiters.push(resolve);
          signal.addEventListener('abort', () => reject(signal.reason));
        });
      }
      await new Promise((r) => setTimeout(r, 5));
      await conn.updateTable('generations').set({ status: 'completed' }).where('id', '=', id).where('status', '=', 'generating').execute();
    },
    async abandon(id, reason) {
      await conn.updateTable('generations').set({ status: 'failed', error: reason }).where('id', '=', id).execute();
    },
  };
  return {
    handler,
    release() {
      isOpen = true;
      for (const w of waiters.splice(0)) w();
    },
  };
}

async function until(condition: () => Promise<boolean> | boolean, what: string, tries = 600): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const countWhere = async (status: 'generating' | 'completed' | 'failed') =>
  Number((await db.selectFrom('generations').select(sql<number>`count(*)`.as('n')).where('status', '=', status).executeTakeFirstOrThrow()).n);

const rowOf = (id: string) =>
  db.selectFrom('generations').select(['status', 'attempts', 'worker_id', 'started_at']).where('id', '=', id).executeTakeFirstOrThrow();

const noErrors = (err: unknown) => {
  throw err;
};

describe('two consumers on one database', () => {
  it('a consumer that starts while another runs jobs leaves them alone; every job starts exactly once', async () => {
    const ids = await addJobs('j', 40);
    const second = await database.open();
    const starts = new Map<string, number>();
    const h1 = countingHandler(db, starts, false);
    const h2 = countingHandler(second, starts);
    const q1 = new InProcessQueue(db, { concurrency: 2, maxAttempts: 2, leaseMs: 1_000, pollMs: 50, onError: noErrors });
    const q2 = new InProcessQueue(second, { concurrency: 2, maxAttempts: 2, leaseMs: 1_000, pollMs: 50, onError: noErrors });
    try {
      await q1.start(h1.handler);
      await until(() => starts.size === 2, 'the first consumer to hold two jobs');
      const held = [...starts.keys()];
      // The old start-up recovery reset every started job here, and the second consumer ran them again.
      await q2.start(h2.handler);
      // Held for longer than two leases while the second consumer drains the rest: q1 renews, q2 never takes them.
      await until(async () => (await countWhere('completed')) === 38, 'the other 38 jobs');
      await new Promise((r) => setTimeout(r, 2_500));
      for (const id of held) expect(await rowOf(id)).toMatchObject({ status: 'generating', worker_id: q1.workerId, attempts: 1 });
      h1.release();
      await until(async () => (await countWhere('completed')) === 40, 'all 40 jobs');
    } finally {
      await Promise.all([q1.stop(), q2.stop()]);
      await second.destroy();
    }
    expect([...starts.keys()].sort()).toEqual(ids);
    expect([...starts.entries()].filter(([, n]) => n !== 1)).toEqual([]);
    const attempts = await db.selectFrom('generations').select('attempts').execute();
    expect(attempts.every((a) => a.attempts === 1)).toBe(true);
  });

  it('N jobs, both consuming from the start: each starts exactly once', async () => {
    const ids = await addJobs('n', 60);
    const second = await database.open();
    const starts = new Map<string, number>();
    const q1 = new InProcessQueue(db, { concurrency: 3, maxAttempts: 2, pollMs: 20, onError: noErrors });
    const q2 = new InProcessQueue(second, { concurrency: 3, maxAttempts: 2, pollMs: 20, onError: noErrors });
    try {
      await Promise.all([q1.start(countingHandler(db, starts).handler), q2.start(countingHandler(second, starts).handler)]);
      await until(async () => (await countWhere('completed')) === ids.length, 'all jobs');
    } finally {
      await Promise.all([q1.stop(), q2.stop()]);
      await second.destroy();
    }
    expect([...starts.keys()].sort()).toEqual(ids);
    expect([...starts.entries()].filter(([, n]) => n !== 1)).toEqual([]);
  });

  it('a job enqueued through another connection wakes an idle consumer (poll on SQLite, NOTIFY on PostgreSQL)', async () => {
    const producerConn = await database.open();
    const starts = new Map<string, number>();
    // On PostgreSQL the consumer effectively never polls: only NOTIFY can wake it in time.
    const consumer = new InProcessQueue(db, { concurrency: 1, maxAttempts: 2, pollMs: TEST_DIALECT === 'postgres' ? 600_000 : 50, onError: noErrors });
    const producer = new InProcessQueue(producerConn, { concurrency: 1, maxAttempts: 2, onError: noErrors });
    try {
      await consumer.start(countingHandler(db, starts).handler);
      const [id] = await addJobs('w', 1);
      await producer.enqueue(id!);
      await until(() => starts.has(id!), 'the consumer to start the job', 400);
      await until(async () => (await rowOf(id!)).status === 'completed', 'the job to complete');
    } finally {
      await consumer.stop();
      await producerConn.destroy();
    }
    expect(starts.get('w-000')).toBe(1);
  });

  it.skipIf(TEST_DIALECT !== 'postgres')('the wake-up survives the loss of the LISTEN connection (the feed reconnects and listens again)', async () => {
    const producerConn = await database.open();
    const starts = new Map<string, number>();
    const consumer = new InProcessQueue(db, { concurrency: 1, maxAttempts: 2, pollMs: 600_000, onError: noErrors });
    const producer = new InProcessQueue(producerConn, { concurrency: 1, maxAttempts: 2, onError: noErrors });
    const feed = changeFeedOf(db) as ReturnType<typeof changeFeedOf> & PostgresFeedState;
    try {
      await consumer.start(countingHandler(db, starts).handler);
      const pid = feed.backendPid;
      expect(pid).not.toBeNull();
      await sql`select pg_terminate_backend(${pid})`.execute(producerConn);
      await until(() => feed.listening && feed.backendPid !== pid, 'the feed to listen again', 400);
      const [id] = await addJobs('r', 1);
      await producer.enqueue(id!);
      await until(async () => (await rowOf(id!)).status === 'completed', 'the consumer to run the job', 400);
    } finally {
      await consumer.stop();
      await producerConn.destroy();
    }
    expect(starts.get('r-000')).toBe(1);
  });

  it('a consumer handing jobs back on stop lets another run them at once, without an attempt more', async () => {
    const ids = await addJobs('h', 2);
    const second = await database.open();
    const starts = new Map<string, number>();
    const q1 = new InProcessQueue(db, { concurrency: 2, maxAttempts: 2, onError: noErrors });
    const q2 = new InProcessQueue(second, { concurrency: 2, maxAttempts: 2, pollMs: 50, onError: noErrors });
    try {
      await q1.start(countingHandler(db, starts, false).handler);
      await until(() => starts.size === 2, 'the first consumer to hold both jobs');
      await q2.start(countingHandler(second, starts).handler);
      await q1.stop();
      await until(async () => (await countWhere('completed')) === 2, 'the second consumer to run both');
    } finally {
      await Promise.all([q1.stop(), q2.stop()]);
      await second.destroy();
    }
    expect(ids.map((id) => starts.get(id))).toEqual([2, 2]);
    const rows = await db.selectFrom('generations').select(['attempts', 'worker_id']).orderBy('id').execute();
    expect(rows).toEqual(ids.map(() => ({ attempts: 1, worker_id: q2.workerId })));
  });
});

describe('a consumer process SIGKILLed while it holds jobs', () => {
  it('leaves its jobs to a live consumer once their lease lapses, and each runs again at most once', async () => {
    const ids = await addJobs('k', 6);
    const startsFile = path.join(database.dataDir, 'child-starts.log');
    const child = spawnTsChild('test/queue/support/consumer-child.ts', {
      KEYFRAME_CHILD_TARGET: JSON.stringify(childTargetOf(database)),
      KEYFRAME_CHILD_STARTS: startsFile,
      KEYFRAME_CHILD_CONCURRENCY: '2',
      KEYFRAME_CHILD_LEASE_MS: '1000',
    });
    const childStarts = () => (existsSync(startsFile) ? readFileSync(startsFile, 'utf8').split('\n').filter(Boolean) : []);
    await until(() => childStarts().length === 2 || child.child.exitCode !== null, 'the child to hold two jobs', 1200);
    expect(child.child.exitCode, child.err()).toBeNull();
    const childWorker = /ready (\S+)/.exec(child.out())?.[1];
    const held = childStarts();

    const starts = new Map<string, number>();
    const queue = new InProcessQueue(db, { concurrency: 2, maxAttempts: 2, leaseMs: 1_000, pollMs: 50, onError: noErrors });
    try {
      await queue.start(countingHandler(db, starts).handler);
      await until(async () => (await countWhere('completed')) === 4, 'the four jobs the child does not hold');
      // The child lives and renews: for more than two leases its jobs stay its own.
      await new Promise((r) => setTimeout(r, 2_500));
      for (const id of held) expect(await rowOf(id)).toMatchObject({ status: 'generating', worker_id: childWorker, attempts: 1 });
      expect(held.filter((id) => starts.has(id))).toEqual([]);

      await child.kill();
      await until(async () => (await countWhere('generating')) === 0, 'the dead child’s jobs to be recovered and run');
    } finally {
      await queue.stop();
    }
    expect(await countWhere('completed')).toBe(6);
    // Each job started once in all, except the two the child held: once there, once more here.
    const total = (id: string) => (starts.get(id) ?? 0) + childStarts().filter((c) => c === id).length;
    expect(ids.map(total)).toEqual(ids.map((id) => (held.includes(id) ? 2 : 1)));
    for (const id of held) expect(await rowOf(id)).toMatchObject({ attempts: 2, worker_id: queue.workerId });
  });
});
