import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import {
  api,
  clusterEnv,
  clusterOf,
  clusterScript,
  createGeneration,
  createKey,
  openClusterDb,
  pidOf,
  sleep,
  uploadReference,
  waitSettled,
  workerNameOf,
} from './cluster.js';

// The api role never runs a job: with every worker stopped, what the API nodes create waits in
// the queue, and the first worker to start takes it.

const env = clusterEnv();
let db: Db;

describe.skipIf(!env)('no worker running', () => {
  const cluster = env ? clusterOf(env) : null!;
  beforeAll(async () => {
    db = await openClusterDb(cluster);
  });
  afterAll(async () => {
    // Whatever happened, the cluster has both workers again for the next file.
    await Promise.all([clusterScript('start', 'worker1'), clusterScript('start', 'worker2')]);
    await db?.destroy();
  });

  it('a generation created while no worker runs stays queued, and completes once a worker starts', async () => {
    await Promise.all([clusterScript('stop', 'worker1'), clusterScript('stop', 'worker2')]);
    expect([pidOf(cluster, 'worker1'), pidOf(cluster, 'worker2')]).toEqual([null, null]);

    const { key } = await createKey(cluster, 'queued');
    const startFrame = await uploadReference(cluster.url, key);
    const id = await createGeneration(cluster.url, key, { startFrameKey: startFrame, duration: '1s', resolution: '480p' });

    // Queued, and still queued 2 s later on every node: no API node started it.
    const row = () => db.selectFrom('generations').select(['status', 'started_at', 'attempts', 'worker_id', 'error']).where('id', '=', id).executeTakeFirstOrThrow();
    for (let i = 0; i < 8; i++) {
      expect(await row()).toMatchObject({ status: 'generating', started_at: null, attempts: 0, worker_id: null, error: null });
      await sleep(250);
    }
    for (const node of cluster.apiUrls) expect((await api(node, 'GET', `/api/generations/${id}`, key)).body.status).toBe('generating');

    await clusterScript('start', 'worker1');
    const final = await waitSettled(cluster.url, key, id, 60);
    expect(final.status, JSON.stringify(final)).toBe('completed');
    const done = await row();
    expect(done.attempts).toBe(1);
    expect(workerNameOf(cluster, done.worker_id!)).toBe('worker1');
  });
});
