import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import { InProcessQueue } from '../../src/queue/in-process-queue.js';
import type { JobHandler } from '../../src/queue/job-queue.js';
import { testDatabase, type TestDatabase } from '../helpers/database.js';

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

async function addJob(id: string, state: { started_at?: string | null; attempts?: number } = {}): Promise<void> {
  await db
    .insertInto('generations')
    .values({
      id,
      user_id: 'u',
      model_name: 'm',
      prompt: 'p',
      params: '{}',
      template_id: null,
      webhook_url: null,
      status: 'generating',
      error: null,
      attempts: state.attempts ?? 0,
      video_key: null,
      created_at: new Date().toISOString(),
      started_at: state.started_at ?? null,
      completed_at: null,
    })
    .execute();
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

  it('on start, retries jobs a killed process left running and fails those out of attempts', async () => {
    const earlier = new Date(Date.now() - 60_000).toISOString();
    await addJob('retry-me', { started_at: earlier, attempts: 1 });
    await addJob('give-up', { started_at: earlier, attempts: 2 });
    await addJob('queued');
    const rec = recordingHandler();
    const queue = new InProcessQueue(db, { concurrency: 1, maxAttempts: 2, onError: (err) => { throw err; } });
    await queue.start(rec.handler);
    await settled(['retry-me', 'give-up', 'queued']);
    await queue.stop();

    expect(rec.abandoned).toEqual([['give-up', 'Generation interrupted by a server restart 2 time(s); gave up']]);
    expect([...rec.ran].sort()).toEqual(['queued', 'retry-me']);
    const rows = await db.selectFrom('generations').select(['id', 'status', 'attempts', 'error']).orderBy('id').execute();
    expect(rows).toEqual([
      { id: 'give-up', status: 'failed', attempts: 2, error: 'Generation interrupted by a server restart 2 time(s); gave up' },
      { id: 'queued', status: 'completed', attempts: 1, error: null },
      { id: 'retry-me', status: 'completed', attempts: 2, error: null },
    ]);
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

  it('on stop, aborts running jobs and leaves them to be retried', async () => {
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
    const row = await db.selectFrom('generations').select(['status', 'started_at']).where('id', '=', 'long').executeTakeFirstOrThrow();
    expect(row.status).toBe('generating');
    expect(row.started_at).not.toBeNull();
  });
});
