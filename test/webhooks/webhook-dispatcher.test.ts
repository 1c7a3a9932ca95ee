import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import type { WebhookDispatcher } from '../../src/webhooks/webhook-dispatcher.js';
import { TEST_DIALECT, testDatabase, type TestDatabase } from '../helpers/database.js';
import { addDelivery, addUser, deliveryRow, settledGeneration, signedBy, startReceiver, testDispatcher, until, type Receiver } from './support/deliveries.js';

/**
 * The webhook dispatcher on a real database, POSTing to real receivers on
 * 127.0.0.1: retries with one delivery id, the body and secret read at send
 * time, giving up, the address guard, and two dispatchers sharing the rows.
 */
let database: TestDatabase;
let db: Db;
const dispatchers: WebhookDispatcher[] = [];
const receivers: Receiver[] = [];

beforeEach(async () => {
  database = await testDatabase('webhooks');
  db = await database.open();
  await addUser(db, 'alice', 'whsec_first');
});

afterEach(async () => {
  await Promise.all(dispatchers.splice(0).map((d) => d.stop()));
  await Promise.all(receivers.splice(0).map((r) => r.close()));
  await database.dispose();
});

function dispatcherOn(conn: Db, options: Parameters<typeof testDispatcher>[2] = {}) {
  const made = testDispatcher(conn, database.dataDir, options);
  dispatchers.push(made.dispatcher);
  return made;
}

async function receiver(answer: Parameters<typeof startReceiver>[0]): Promise<Receiver> {
  const r = await startReceiver(answer);
  receivers.push(r);
  return r;
}

describe('webhook dispatcher', () => {
  it('retries a delivery the receiver refuses twice, with one delivery id, signed with the secret current at each attempt', async () => {
    // Each refusal rotates the user's secret first: every attempt must read it afresh.
    const secrets = ['whsec_first', 'whsec_second', 'whsec_third'];
    const target = await receiver(async (_hook, n) => {
      if (n >= 2) return 200;
      await db.updateTable('users').set({ webhook_secret: secrets[n + 1]! }).where('id', '=', 'alice').execute();
      return 503;
    });
    await settledGeneration(db, 'gen_1', 'alice', target.url, 'completed');
    const id = await addDelivery(db, 'gen_1');
    const { dispatcher, logged } = dispatcherOn(db);
    dispatcher.start();
    await dispatcher.queued();

    await until(async () => (await deliveryRow(db, id)).state !== 'pending', 'the delivery to settle');
    expect(await deliveryRow(db, id)).toMatchObject({ state: 'delivered', attempts: 3, last_error: null, worker_id: null, lease_expires_at: null, delivered_at: expect.any(String) });
    expect(target.requests.map((r) => r.answered)).toEqual([503, 503, 200]);
    for (const [n, hook] of target.requests.entries()) {
      expect(hook.headers['x-keyframe-delivery']).toBe(id);
      expect(signedBy(secrets[n]!, hook), `attempt ${n + 1}`).toBe(true);
      expect(hook.headers['content-type']).toBe('application/json');
      // Built at send time: the completed video's URL is presigned for each attempt.
      expect(JSON.parse(hook.body)).toMatchObject({ id: 'gen_1', status: 'completed', video_url: expect.stringContaining('/videos/gen_1.mp4'), error: null });
    }
    // The log names the target's origin and the delivery, never the path or query of the URL.
    expect(logged.filter((l) => l.message === 'webhook delivery failed; will retry').map((l) => l.details)).toEqual([
      { target: new URL(target.url).origin, deliveryId: id, attempt: 1, failure: 'HTTP 503' },
      { target: new URL(target.url).origin, deliveryId: id, attempt: 2, failure: 'HTTP 503' },
    ]);
    expect(JSON.stringify(logged)).not.toContain('token=abc');
  });

  it('gives up after maxAttempts: the delivery fails with the last error', async () => {
    const target = await receiver(() => 500);
    await settledGeneration(db, 'gen_1', 'alice', target.url);
    const id = await addDelivery(db, 'gen_1');
    const { dispatcher, logged } = dispatcherOn(db, { maxAttempts: 3 });
    dispatcher.start();

    await until(async () => (await deliveryRow(db, id)).state !== 'pending', 'the delivery to settle');
    expect(await deliveryRow(db, id)).toMatchObject({ state: 'failed', attempts: 3, last_error: 'HTTP 500', delivered_at: null, worker_id: null });
    expect(target.requests).toHaveLength(3);
    expect(logged.at(-1)).toEqual({ message: 'webhook delivery gave up', details: { target: new URL(target.url).origin, deliveryId: id, attempt: 3, failure: 'HTTP 500' } });
  });

  it('records a network failure by its code, and a private target by EPRIVATEADDRESS without connecting', async () => {
    const closed = await receiver(() => 200);
    await closed.close();
    receivers.splice(receivers.indexOf(closed), 1);
    await settledGeneration(db, 'gen_refused', 'alice', closed.url);
    const refused = await addDelivery(db, 'gen_refused');
    const { dispatcher } = dispatcherOn(db, { maxAttempts: 1 });
    dispatcher.start();
    await until(async () => (await deliveryRow(db, refused)).state === 'failed', 'the refused delivery to fail');
    expect((await deliveryRow(db, refused)).last_error).toBe('ECONNREFUSED');

    await dispatcher.stop();
    const target = await receiver(() => 200);
    await settledGeneration(db, 'gen_private', 'alice', target.url);
    const guarded = await addDelivery(db, 'gen_private');
    const { dispatcher: strict } = dispatcherOn(db, { maxAttempts: 1, allowPrivate: false });
    strict.start();
    await until(async () => (await deliveryRow(db, guarded)).state === 'failed', 'the private delivery to fail');
    expect((await deliveryRow(db, guarded)).last_error).toBe('EPRIVATEADDRESS');
    expect(target.requests).toHaveLength(0);
  });

  it('shares the rows between dispatchers on two connections: each delivery is sent once', async () => {
    const target = await receiver(() => 200);
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      await settledGeneration(db, `gen_${i}`, 'alice', target.url);
      ids.push(await addDelivery(db, `gen_${i}`));
    }
    const { dispatcher: a } = dispatcherOn(db, { concurrency: 2 });
    const { dispatcher: b } = dispatcherOn(await database.secondConnection(), { concurrency: 2 });
    a.start();
    b.start();

    const delivered = () => db.selectFrom('webhook_deliveries').select('id').where('state', '=', 'delivered').execute();
    await until(async () => (await delivered()).length === ids.length, 'every delivery');
    const sent = target.requests.map((r) => r.headers['x-keyframe-delivery']);
    expect([...sent].sort()).toEqual([...ids].sort());
  });

  it.skipIf(TEST_DIALECT !== 'postgres')('wakes an idle dispatcher on another connection through NOTIFY keyframe_webhooks', async () => {
    const target = await receiver(() => 200);
    // It never polls within the test: only a notification can wake it.
    const { dispatcher: idle } = dispatcherOn(await database.secondConnection(), { pollMs: 600_000 });
    idle.start();
    await settledGeneration(db, 'gen_1', 'alice', target.url);
    const id = await addDelivery(db, 'gen_1');
    // A dispatcher that is not running (as in an API process) still tells the others. Notified until
    // heard: the idle one's LISTEN may still be on its way when the first notification is sent.
    const { dispatcher: notifier } = dispatcherOn(db);
    await until(async () => {
      await notifier.queued();
      return (await deliveryRow(db, id)).state === 'delivered';
    }, 'the idle dispatcher to deliver');
    expect(target.requests).toHaveLength(1);
  });
});
