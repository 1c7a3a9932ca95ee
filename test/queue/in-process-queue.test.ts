import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import { InProcessQueue } from '../../src/queue/in-process-queue.js';
import type { JobHandler } from '../../src/queue/job-queue.js';
import { testDatabase, type TestDatabase } from '../helpers/database.js';
import { queuedJob } from './support/jobs.js';

let database: TestDatabase;
let db: Db;

beforeEach(async () => {
  database = await testDatabase('queue');
  db = await database.open();
  await db.insertInto('users').values({ id: 'u', webhook_secret: 'whsec_x', created_at: new Date().toISOString() }).execute();
});

afterEach(async () => {
  await db.destroy();
  await database.dispose();
});

async function addJob(
  id: string,
  state: { started_at?: string | null; attempts?: number; worker_id?: string | null; lease_expires_at?: string | null } = {},
): Promise<void> {
  await db.insertInto('generations').values(queuedJob(id, 'u', new Date(), state)).execute();
}

/** A handler that settles jobs the way the generation worker does, and records what it saw. */
function recordingHandler(hold: Promise<void> = Promise.resolve()) {
  const ran: string[] = [];
  const abandoned: [string, string][] = [];
  let running = 0;
  let maxRunning = 0;
  const handler: JobHandler = {
    async run(id) {
      ran.push(id);
      running += 1;
      maxRunning = Math.max(maxRunning, running);
      await hold;
      running -= 1;
      await db.updateTable('generations').set({ status: 'completed' }).where('id', '=', id).execute();
    },
    async abandon(id, reason) {
      abandoned.push([id, reason]);
      await db.updateTable('generations').set({ status: 'failed', error: reason }).where('id', '=', id).execute();
    },
  };
  return { handler, ran, abandoned, maxRunning: () => maxRunning };
}

async function settled(ids: string[]): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const rows = await db.selectFrom('generations').select('status').where('id', 'in', ids).execute();
    if (rows.every((r) => r.status !== 'generating')) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('jobs did not settle');
}

describe('InProcessQueue', () => {
  it('runs every queued job once, never more at a time than the concurrency', async () => {
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    const rec = recordingHandler(hold);
    const queue = new InProcessQueue(db, { concurrency: 2, maxAttempts: 2, onError: (err) => { throw err; } });
    await queue.start(rec.handler);
    const ids = ['a', 'b', 'c', 'd', 'e'];
    for (const id of ids) {
      await addJob(id);
      await queue.enqueue(id);
    }
    for (let i = 0; i < 100 && rec.ran.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(rec.ran).toHaveLength(2);
    release();
    await settled(ids);
    await queue.stop();
    expect([...rec.ran].sort()).toEqual(ids);
    expect(rec.maxRunning()).toBe(2);
    const attempts = await db.selectFrom('generations').select('attempts').execute();
    expect(attempts.every((a) => a.attempts === 1)).toBe(true);
  });

  it('on start, retries jobs whose lease lapsed and fails those out of attempts; leaves a live lease alone', async () => {
    const earlier = new Date(Date.now() - 60_000).toISOString();
    const lapsed = new Date(Date.now() - 1_000).toISOString();
    const live = new Date(Date.now() + 600_000).toISOString();
    await addJob('retry-me', { started_at: earlier, attempts: 1, worker_id: 'dead', lease_expires_at: lapsed });
    await addJob('give-up', { started_at: earlier, attempts: 2, worker_id: 'dead', lease_expires_at: lapsed });
    await addJob('held', { started_at: earlier, attempts: 1, worker_id: 'alive-elsewhere', lease_expires_at: live });
    await addJob('queued');
    const rec = recordingHandler();
    const queue = new InProcessQueue(db, { concurrency: 1, maxAttempts: 2, onError: (err) => { throw err; } });
    await queue.start(rec.handler);
    await settled(['retry-me', 'give-up', 'queued']);
    await queue.stop();

    expect(rec.abandoned).toEqual([['give-up', 'Generation interrupted by a server restart 2 time(s); gave up']]);
    expect([...rec.ran].sort()).toEqual(['queued', 'retry-me']);
    const rows = await db.selectFrom('generations').select(['id', 'status', 'attempts', 'error', 'worker_id', 'lease_expires_at']).orderBy('id').execute();
    expect(rows).toEqual([
      { id: 'give-up', status: 'failed', attempts: 2, error: 'Generation interrupted by a server restart 2 time(s); gave up', worker_id: queue.workerId, lease_expires_at: expect.any(String) },
      // Another live process holds it: not touched.
      { id: 'held', status: 'generating', attempts: 1, error: null, worker_id: 'alive-elsewhere', lease_expires_at: live },
      { id: 'queued', status: 'completed', attempts: 1, error: null, worker_id: queue.workerId, lease_expires_at: expect.any(String) },
      { id: 'retry-me', status: 'completed', attempts: 2, error: null, worker_id: queue.workerId, lease_expires_at: expect.any(String) },
    ]);
  });

  it('a claim writes the worker id and a lease, which is renewed while the job runs', async () => {
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    const rec = recordingHandler(hold);
    const queue = new InProcessQueue(db, { concurrency: 1, maxAttempts: 2, leaseMs: 600, onError: (err) => { throw err; } });
    await queue.start(rec.handler);
    await addJob('long');
    await queue.enqueue('long');
    const lease = async () => (await db.selectFrom('generations').select(['worker_id', 'lease_expires_at']).where('id', '=', 'long').executeTakeFirstOrThrow());
    let first: string | null = null;
    for (let i = 0; i < 200 && first === null; i++) {
      first = (await lease()).lease_expires_at;
      if (first === null) await new Promise((r) => setTimeout(r, 10));
    }
    expect(first).not.toBeNull();
    expect((await lease()).worker_id).toBe(queue.workerId);
    let renewed = false;
    for (let i = 0; i < 200 && !renewed; i++) {
      renewed = (await lease()).lease_expires_at! > first!;
      if (!renewed) await new Promise((r) => setTimeout(r, 25));
    }
    expect(renewed).toBe(true);
    release();
    await settled(['long']);
    await queue.stop();
    expect(rec.ran).toEqual(['long']);
  });

  it('aborts a running job whose lease another consumer took over, without failing it', async () => {
    let sawAbort: unknown = null;
    const handler: JobHandler = {
      run: (_id, signal) =>
        new Promise<void>((_resolve, reject) => {
          signal.addEventListener('abort', () => {
            sawAbort = signal.reason;
            reject(signal.reason);
          });
        }),
      abandon: async () => {
        throw new Error('a job whose lease was lost must not be abandoned');
      },
    };
    const queue = new InProcessQueue(db, { concurrency: 1, maxAttempts: 2, leaseMs: 300, onError: () => {} });
    await queue.start(handler);
    await addJob('stolen');
    await queue.enqueue('stolen');
    for (let i = 0; i < 200; i++) {
      const row = await db.selectFrom('generations').select('started_at').where('id', '=', 'stolen').executeTakeFirstOrThrow();
      if (row.started_at) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    // What a recovering consumer's takeover writes.
    await db.updateTable('generations').set({ worker_id: 'someone-else', lease_expires_at: new Date(Date.now() + 600_000).toISOString() }).where('id', '=', 'stolen').execute();
    for (let i = 0; i < 200 && sawAbort === null; i++) await new Promise((r) => setTimeout(r, 10));
    expect(String(sawAbort)).toMatch(/lease on job stolen lost/);
    await queue.stop();
    // Not ours any more: the stop hands nothing back.
    const row = await db.selectFrom('generations').select(['status', 'worker_id', 'attempts']).where('id', '=', 'stolen').executeTakeFirstOrThrow();
    expect(row).toEqual({ status: 'generating', worker_id: 'someone-else', attempts: 1 });
  });

  it('fails a job whose handler throws, instead of leaving it generating', async () => {
    const abandoned: [string, string][] = [];
    const errors: unknown[] = [];
    const handler: JobHandler = {
      run: async () => {
        throw new Error('database went away');
      },
      abandon: async (id, reason) => {
        abandoned.push([id, reason]);
        await db.updateTable('generations').set({ status: 'failed', error: reason }).where('id', '=', id).execute();
      },
    };
    const queue = new InProcessQueue(db, { concurrency: 1, maxAttempts: 2, onError: (err) => errors.push(err) });
    await queue.start(handler);
    await addJob('boom');
    await queue.enqueue('boom');
    await settled(['boom']);
    await queue.stop();
    expect(abandoned).toEqual([['boom', 'Generation failed: internal error']]);
    expect(errors).toHaveLength(1);
  });

  it('on stop, aborts running jobs and hands them back at once, not counting the attempt', async () => {
    let sawAbort = false;
    const handler: JobHandler = {
      run: (_id, signal) =>
        new Promise<void>((_resolve, reject) => {
          signal.addEventListener('abort', () => {
            sawAbort = true;
            reject(signal.reason);
          });
        }),
      abandon: async () => {
        throw new Error('a stopped job must not be abandoned');
      },
    };
    const queue = new InProcessQueue(db, { concurrency: 1, maxAttempts: 2, onError: () => {} });
    await queue.start(handler);
    await addJob('long');
    await queue.enqueue('long');
    for (let i = 0; i < 100; i++) {
      const row = await db.selectFrom('generations').select('started_at').where('id', '=', 'long').executeTakeFirstOrThrow();
      if (row.started_at) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    await queue.stop();
    expect(sawAbort).toBe(true);
    const row = await db.selectFrom('generations').select(['status', 'started_at', 'attempts', 'worker_id', 'lease_expires_at']).where('id', '=', 'long').executeTakeFirstOrThrow();
    // Queued again: the next consumer to look (here or in another process) runs it.
    expect(row).toEqual({ status: 'generating', started_at: null, attempts: 0, worker_id: null, lease_expires_at: null });
  });
});
