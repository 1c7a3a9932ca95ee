import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import { ModelRegistry } from '../../src/domain/generations/model-registry.js';
import type { Runner } from '../../src/domain/generations/runner.js';
import { GenerationWorker } from '../../src/domain/generations/worker.js';
import type { WebhookDispatcher } from '../../src/webhooks/webhook-dispatcher.js';
import { ROOT } from '../helpers/build.js';
import { refuseInserts, testDatabase, type TestDatabase } from '../helpers/database.js';
import { addUser, generationRow, signedBy, startReceiver, testDispatcher, until, type Receiver } from './support/deliveries.js';

/**
 * GenerationWorker's side of webhooks: settling a generation writes its
 * delivery in the same transaction (or neither), only the run still holding
 * the claim may settle, and the delivery is then sent by the dispatcher.
 */
let database: TestDatabase;
let db: Db;
let target: Receiver;
let dispatcher: WebhookDispatcher;
const registry = ModelRegistry.load(path.join(ROOT, 'config/models.json'));

beforeEach(async () => {
  database = await testDatabase('generation-webhooks');
  db = await database.open();
  await addUser(db, 'alice', 'whsec_a');
  target = await startReceiver(() => 200);
  dispatcher = testDispatcher(db, database.dataDir).dispatcher;
});

afterEach(async () => {
  await dispatcher.stop();
  await target.close();
  await database.dispose();
});

/** A worker whose runner calls `during` (the job's id) and then "renders" the job's video key. */
function workerWith(during: (id: string) => Promise<void> = async () => {}): GenerationWorker {
  const runner: Runner = {
    async run(job) {
      await during(job.id);
      return { key: job.videoKey };
    },
  };
  return new GenerationWorker(db, registry, dispatcher, { timeoutSeconds: 30, runnerFor: () => runner, log: () => {} });
}

/** A generation claimed by `workerId`, as the queue hands it to the worker. */
async function runningGeneration(id: string, workerId: string | null, webhookUrl: string | null = target.url): Promise<void> {
  const now = new Date().toISOString();
  await db.insertInto('generations').values(generationRow(id, 'alice', webhookUrl, { started_at: now, attempts: 1, worker_id: workerId, lease_expires_at: now })).execute();
}

const generation = (id: string) => db.selectFrom('generations').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
const deliveriesOf = (id: string) => db.selectFrom('webhook_deliveries').selectAll().where('generation_id', '=', id).execute();

describe('settling a generation with a webhook', () => {
  it('writes a pending delivery with the outcome, which the dispatcher sends', async () => {
    await runningGeneration('gen_1', 'w1');
    dispatcher.start();
    await workerWith().run('gen_1', new AbortController().signal);

    expect(await generation('gen_1')).toMatchObject({ status: 'completed', video_key: expect.stringContaining('gen_1') });
    const [delivery] = await deliveriesOf('gen_1');
    expect(delivery).toMatchObject({ id: expect.stringMatching(/^whd_/), created_at: expect.any(String) });
    await until(() => target.requests.length === 1, 'the webhook');
    const [hook] = target.requests;
    expect(hook!.headers['x-keyframe-delivery']).toBe(delivery!.id);
    expect(signedBy('whsec_a', hook!)).toBe(true);
    expect(JSON.parse(hook!.body)).toMatchObject({ id: 'gen_1', status: 'completed', video_url: expect.any(String) });
    await until(async () => (await deliveriesOf('gen_1'))[0]!.state === 'delivered', 'the delivery to be recorded');
  });

  it('writes no delivery for a generation without a webhook_url', async () => {
    await runningGeneration('gen_1', 'w1', null);
    await workerWith().run('gen_1', new AbortController().signal);
    expect((await generation('gen_1')).status).toBe('completed');
    expect(await deliveriesOf('gen_1')).toEqual([]);
  });

  it('settles nothing when the delivery cannot be written: one transaction', async () => {
    await runningGeneration('gen_1', 'w1');
    await refuseInserts(db, { table: 'webhook_deliveries', message: 'deliveries refused by the test' });
    await expect(workerWith().run('gen_1', new AbortController().signal)).rejects.toThrow('deliveries refused by the test');
    expect(await generation('gen_1')).toMatchObject({ status: 'generating', completed_at: null, video_key: null });
    expect(await deliveriesOf('gen_1')).toEqual([]);
  });

  it('a run whose claim was taken over cannot settle the row', async () => {
    await runningGeneration('gen_1', 'w1');
    // While the runner works, the claim lapses and another worker takes the job over.
    const takenOver = workerWith(async (id) => {
      await db.updateTable('generations').set({ worker_id: 'w2' }).where('id', '=', id).execute();
    });
    await takenOver.run('gen_1', new AbortController().signal);
    expect(await generation('gen_1')).toMatchObject({ status: 'generating', worker_id: 'w2', video_key: null });
    expect(await deliveriesOf('gen_1')).toEqual([]);
  });

  it('abandon fails the job whoever holds it, and queues its delivery', async () => {
    await runningGeneration('gen_1', 'w2');
    await workerWith().abandon('gen_1', 'Generation interrupted by a server restart 3 time(s); gave up');
    expect(await generation('gen_1')).toMatchObject({ status: 'failed', error: expect.stringMatching(/^Generation interrupted/) });
    expect(await deliveriesOf('gen_1')).toMatchObject([{ state: 'pending', attempts: 0 }]);
  });
});
