import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import type { WebhookDispatcher } from '../../src/webhooks/webhook-dispatcher.js';
import { childTargetOf, killChildren, spawnTsChild } from '../helpers/child-process.js';
import { testDatabase, type TestDatabase } from '../helpers/database.js';
import { addDelivery, addUser, deliveryRow, settledGeneration, startReceiver, testDispatcher, until, type Receiver } from './support/deliveries.js';

/**
 * Deliveries outlive their dispatcher (issue 12): one that stops, one whose
 * claim lapses, and one in a child process that is SIGKILLed mid-attempt each
 * leave the delivery to another dispatcher on another connection, which sends
 * it to a receiver that answers 200 exactly once.
 */
let database: TestDatabase;
let db: Db;
let target: Receiver;
const dispatchers: WebhookDispatcher[] = [];

beforeEach(async () => {
  database = await testDatabase('webhook-durability');
  db = await database.open();
  await addUser(db, 'alice', 'whsec_a');
});

afterEach(async () => {
  killChildren();
  await Promise.all(dispatchers.splice(0).map((d) => d.stop()));
  await target?.close();
  await database.dispose();
});

async function dispatcherOn(conn: Db, options: Parameters<typeof testDispatcher>[2] = {}): Promise<WebhookDispatcher> {
  const { dispatcher } = testDispatcher(conn, database.dataDir, options);
  dispatchers.push(dispatcher);
  return dispatcher;
}

/**
 * The receiver, and the generation `gen_1` with it as its webhook. `holdFirst`: the first request
 * is held unanswered (its sender stops or dies meanwhile); every other one is answered 200.
 */
async function startTarget(holdFirst: boolean): Promise<void> {
  target = await startReceiver((_hook, n) => (holdFirst && n === 0 ? 'hold' : 200));
  await settledGeneration(db, 'gen_1', 'alice', target.url);
}

/** The delivery reached the receiver once with a 200, and every request carried its id. */
function expectDeliveredOnce(id: string): void {
  expect(target.requests.filter((r) => r.answered === 200)).toHaveLength(1);
  for (const r of target.requests) expect(r.headers['x-keyframe-delivery']).toBe(id);
}

describe('durable webhook deliveries', () => {
  it('a dispatcher that stops mid-attempt hands the delivery back uncounted; another sends it', async () => {
    await startTarget(true);
    const id = await addDelivery(db, 'gen_1');
    const first = await dispatcherOn(db);
    first.start();
    await until(() => target.requests.length === 1, 'the first attempt to arrive');
    expect(await deliveryRow(db, id)).toMatchObject({ state: 'pending', worker_id: first.workerId });

    await first.stop();
    await first.stop(); // idempotent
    expect(await deliveryRow(db, id)).toMatchObject({ state: 'pending', attempts: 0, worker_id: null, lease_expires_at: null, last_error: null });

    const second = await dispatcherOn(await database.secondConnection());
    second.start();
    await until(async () => (await deliveryRow(db, id)).state === 'delivered', 'the second dispatcher to deliver');
    expect(await deliveryRow(db, id)).toMatchObject({ attempts: 1 });
    expectDeliveredOnce(id);
  });

  it('a delivery whose claim lapsed is taken over', async () => {
    await startTarget(false);
    const lapsed = new Date(Date.now() - 1_000).toISOString();
    const id = await addDelivery(db, 'gen_1', { worker_id: 'gone:1:dead', lease_expires_at: lapsed });
    const dispatcher = await dispatcherOn(await database.secondConnection());
    dispatcher.start();
    await until(async () => (await deliveryRow(db, id)).state === 'delivered', 'the lapsed delivery to be sent');
    expectDeliveredOnce(id);
  });

  it('a dispatcher SIGKILLed mid-attempt: another sends the delivery once its claim lapses', async () => {
    await startTarget(true);
    const id = await addDelivery(db, 'gen_1');
    // Long enough that the child's attempt (its time limit just under the claim) is still held when it is killed.
    const leaseMs = 3_000;
    const child = spawnTsChild('test/webhooks/support/dispatcher-child.ts', {
      KEYFRAME_CHILD_TARGET: JSON.stringify(childTargetOf(database)),
      KEYFRAME_CHILD_LEASE_MS: String(leaseMs),
      KEYFRAME_CHILD_DIR: database.dataDir,
    });
    await until(() => (target.requests.length === 1 && child.out().includes('\n')) || child.child.exitCode !== null, 'the child’s attempt to arrive', 1200);
    expect(child.child.exitCode, child.err()).toBeNull();
    await child.kill();
    // It died holding the claim, the attempt not recorded.
    expect(await deliveryRow(db, id)).toMatchObject({ state: 'pending', attempts: 0, worker_id: /ready (\S+)/.exec(child.out())?.[1] });
    const survivor = await dispatcherOn(await database.secondConnection());
    survivor.start();
    await until(async () => (await deliveryRow(db, id)).state === 'delivered', 'the survivor to deliver');
    expect((await deliveryRow(db, id)).worker_id).toBeNull();
    expectDeliveredOnce(id);
  });
});
