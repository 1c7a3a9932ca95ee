import { createHash, createHmac, randomBytes } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import { randomId } from '../../src/domain/ids.js';
import { CallbackLedger, type AwaitedCallback, type RunOutcome } from '../../src/runners/http/callback-ledger.js';
import { signCallback } from '../../src/runners/http/callback-signature.js';
import { signingSecret } from '../../src/signing-secret.js';
import { storedBytes, testDatabase, TEST_DIALECT, type TestDatabase } from '../helpers/database.js';
import { queuedJob } from '../queue/support/jobs.js';

// Two ledgers on two connections to one database are two nodes of a cluster: node 1 runs the job
// and waits, node 2 is the API node the model worker's callback reaches.

const SIGNING_SECRET = 'callback-ledger-test-signing-secret-0123456789';
const COMPLETED = JSON.stringify({ status: 'completed' });

let database: TestDatabase;
let db1: Db;
let db2: Db;
let node1: CallbackLedger;
let node2: CallbackLedger;
let logged: { err: unknown; generationId: string }[];
const open: AwaitedCallback[] = [];

beforeEach(async () => {
  database = await testDatabase('ledger');
  db1 = await database.open();
  db2 = await database.secondConnection();
  await db1.insertInto('users').values({ id: 'u', webhook_secret: 'whsec_x', created_at: new Date().toISOString() }).execute();
  logged = [];
  const log = (err: unknown, generationId: string) => logged.push({ err, generationId });
  node1 = new CallbackLedger(db1, SIGNING_SECRET, { log });
  node2 = new CallbackLedger(db2, SIGNING_SECRET, { log });
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((run) => run.close()));
  await database.dispose();
});

/** A running generation and its run on node 1, recorded as awaiting a callback. */
async function runningJob(): Promise<{ id: string; runId: string; run: AwaitedCallback }> {
  const id = randomId('gen');
  await db1.insertInto('generations').values(queuedJob(id, 'u', new Date(), { started_at: new Date().toISOString(), attempts: 1 })).execute();
  const runId = randomBytes(12).toString('base64url');
  const run = await node1.open(id, runId);
  open.push(run);
  return { id, runId, run };
}

/** Bounds a wait the test expects to end (a broken wake-up fails the test instead of hanging it). */
function within<T>(promise: Promise<T>, ms = 15_000): Promise<T> {
  let timer: NodeJS.Timeout;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms);
  });
  return Promise.race([promise, bound]).finally(() => clearTimeout(timer));
}

async function rowOf(id: string) {
  return db1.selectFrom('runner_callbacks').selectAll().where('generation_id', '=', id).executeTakeFirst();
}

describe('callback ledger across two nodes', () => {
  it("node 2 accepts a correctly signed callback and node 1's wait resolves with its outcome", async () => {
    const { id, run } = await runningJob();
    const waiting = run.outcome(new AbortController().signal);
    expect(await node2.accept(id, COMPLETED, signCallback(run.secret, COMPLETED))).toBe('accepted');
    expect(await within(waiting)).toEqual({ ok: true });
    expect(await rowOf(id)).toMatchObject({ outcome: '{"ok":true}', settled_at: expect.any(String) });
  });

  it('stores a failure with its reason trimmed and bounded, prefixed as the client sees it', async () => {
    const { id, run } = await runningJob();
    const body = JSON.stringify({ status: 'failed', error: `  ${'x'.repeat(600)}  ` });
    expect(await node2.accept(id, body, signCallback(run.secret, body))).toBe('accepted');
    const outcome = (await within(run.outcome(new AbortController().signal))) as Extract<RunOutcome, { ok: false }>;
    expect(outcome).toEqual({ ok: false, error: `Generation failed: ${'x'.repeat(500)}` });
  });

  it('a replay of the accepted callback, on either node, finds no job', async () => {
    const { id, run } = await runningJob();
    const signature = signCallback(run.secret, COMPLETED);
    expect(await node2.accept(id, COMPLETED, signature)).toBe('accepted');
    expect(await node2.accept(id, COMPLETED, signature)).toBe('unknown_job');
    expect(await node1.accept(id, COMPLETED, signature)).toBe('unknown_job');
    await run.close();
    expect(await rowOf(id)).toBeUndefined();
    expect(await node2.accept(id, COMPLETED, signature)).toBe('unknown_job');
  });

  it('refuses a bad signature and the run still waits for the genuine callback', async () => {
    const { id, run } = await runningJob();
    let settled = false;
    const waiting = run.outcome(new AbortController().signal).finally(() => (settled = true));
    expect(await node2.accept(id, COMPLETED, signCallback('not-the-job-secret', COMPLETED))).toBe('bad_signature');
    expect(await node2.accept(id, COMPLETED, undefined)).toBe('bad_signature');
    expect((await rowOf(id))?.outcome).toBeNull();
    expect(settled).toBe(false);
    expect(await node2.accept(id, COMPLETED, signCallback(run.secret, COMPLETED))).toBe('accepted');
    expect(await within(waiting)).toEqual({ ok: true });
  });

  it('answers malformed to a signed body that is no outcome, and keeps waiting', async () => {
    const { id, run } = await runningJob();
    for (const body of ['not json', 'null', '{"status":"done"}']) expect(await node2.accept(id, body, signCallback(run.secret, body))).toBe('malformed');
    expect((await rowOf(id))?.outcome).toBeNull();
  });

  it('a node with another signing secret refuses as unverifiable and logs why; a correctly configured node still accepts', async () => {
    const { id, run } = await runningJob();
    const misconfigured = new CallbackLedger(db2, 'another-signing-secret-of-32-characters!', { log: (err, generationId) => logged.push({ err, generationId }) });
    expect(await misconfigured.accept(id, COMPLETED, signCallback(run.secret, COMPLETED))).toBe('unverifiable');
    expect(logged).toEqual([{ err: expect.objectContaining({ message: expect.stringContaining('KEYFRAME_SIGNING_SECRET') }), generationId: id }]);
    expect((await rowOf(id))?.outcome).toBeNull();
    expect(await node2.accept(id, COMPLETED, signCallback(run.secret, COMPLETED))).toBe('accepted');
    expect(await within(run.outcome(new AbortController().signal))).toEqual({ ok: true });
  });

  it('two concurrent correct callbacks, one per node: exactly one is accepted', async () => {
    for (let round = 0; round < 10; round++) {
      const { id, run } = await runningJob();
      const signature = signCallback(run.secret, COMPLETED);
      const answers = await Promise.all([node1.accept(id, COMPLETED, signature), node2.accept(id, COMPLETED, signature)]);
      expect(answers.sort()).toEqual(['accepted', 'unknown_job']);
      expect(await within(run.outcome(new AbortController().signal))).toEqual({ ok: true });
    }
  });

  it('a callback accepted in the waiting process itself wakes the run too', async () => {
    const { id, run } = await runningJob();
    const waiting = run.outcome(new AbortController().signal);
    expect(await node1.accept(id, COMPLETED, signCallback(run.secret, COMPLETED))).toBe('accepted');
    expect(await within(waiting)).toEqual({ ok: true });
  });

  it.runIf(TEST_DIALECT === 'postgres')('on PostgreSQL the accepting node wakes the run by NOTIFY, without waiting for a poll', async () => {
    const { id, runId } = await runningJob();
    const listening = new CallbackLedger(db1, SIGNING_SECRET, { pollMs: 3_600_000 });
    const run = await listening.open(id, runId);
    const waiting = run.outcome(new AbortController().signal);
    // The first read finds nothing; from then on only a notification can wake the run within the bound.
    await new Promise((r) => setTimeout(r, 200));
    expect(await node2.accept(id, COMPLETED, signCallback(run.secret, COMPLETED))).toBe('accepted');
    expect(await within(waiting, 10_000)).toEqual({ ok: true });
  });

  it('the signal aborts the wait with its reason', async () => {
    const { run } = await runningJob();
    const controller = new AbortController();
    const waiting = run.outcome(controller.signal);
    const reason = new Error('shutdown');
    controller.abort(reason);
    await expect(within(waiting)).rejects.toBe(reason);
  });
});

describe('runs and their rows', () => {
  it('a later run replaces the row: the earlier secret no longer verifies, and closing the earlier run leaves the later one', async () => {
    const first = await runningJob();
    const second = await node1.open(first.id, randomBytes(12).toString('base64url'));
    open.push(second);
    expect(second.secret).not.toBe(first.run.secret);
    expect(await node2.accept(first.id, COMPLETED, signCallback(first.run.secret, COMPLETED))).toBe('bad_signature');
    await first.run.close();
    expect(await rowOf(first.id)).toBeDefined();
    expect(await node2.accept(first.id, COMPLETED, signCallback(second.secret, COMPLETED))).toBe('accepted');
    expect(await within(second.outcome(new AbortController().signal))).toEqual({ ok: true });
  });

  it('a job that is no longer generating awaits no callback, even if its row remains', async () => {
    const { id, run } = await runningJob();
    await db1.updateTable('generations').set({ status: 'failed', error: 'gave up', completed_at: new Date().toISOString() }).where('id', '=', id).execute();
    expect(await node2.accept(id, COMPLETED, signCallback(run.secret, COMPLETED))).toBe('unknown_job');
  });

  it('answers unknown_job for a generation with no run', async () => {
    expect(await node2.accept(randomId('gen'), COMPLETED, 'sha256=00')).toBe('unknown_job');
  });

  it('derives the secret from a subkey of the signing secret, and stores only its SHA-256', async () => {
    const { id, runId, run } = await runningJob();
    const subkey = createHmac('sha256', SIGNING_SECRET).update('keyframe/runner-callbacks/v1').digest();
    expect(run.secret).toBe(createHmac('sha256', subkey).update(`${id}.${runId}`).digest('base64url'));
    expect(await rowOf(id)).toMatchObject({ run_id: runId, secret_sha256: createHash('sha256').update(run.secret).digest('hex'), outcome: null });
    // Every byte the database keeps (SQLite's file and log, or a dump of PostgreSQL) holds the digest, never the secret.
    for (const { name, bytes } of await storedBytes(database)) expect(bytes.includes(run.secret), name).toBe(false);
  });
});

describe('the signing secret kept in the data dir (no KEYFRAME_SIGNING_SECRET)', () => {
  it('is made once, 0600, and every node on the data dir reads the same one', async () => {
    const config = { signingSecret: null, dataDir: database.dataDir };
    const first = signingSecret(config);
    expect(first).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(signingSecret(config)).toBe(first);
    expect((await stat(`${database.dataDir}/signing-secret`)).mode & 0o777).toBe(0o600);
    expect((await readdir(database.dataDir)).filter((f) => f.startsWith('signing-secret'))).toEqual(['signing-secret']);
    expect(signingSecret({ signingSecret: SIGNING_SECRET, dataDir: database.dataDir })).toBe(SIGNING_SECRET);
  });
});
