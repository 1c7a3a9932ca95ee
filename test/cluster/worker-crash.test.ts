import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import {
  clusterEnv,
  clusterOf,
  clusterScript,
  createGeneration,
  createKey,
  JobSampler,
  LONG_RENDER,
  openClusterDb,
  pidOf,
  sleep,
  uploadReference,
  waitRunning,
  waitSettled,
  workerNameOf,
} from './cluster.js';

// A worker that dies (SIGKILL: no hand-back, no clean-up) mid-job: its claim lapses (the lease, 3 s
// here: the database queue's lease, or BullMQ's lock with KEYFRAME_REDIS_URL) and the other worker
// takes the job up. Nothing is left stuck, no job runs in two places at once, and no job runs again
// once it has settled. Whichever queue dispatches, the record of who runs what is the
// `generations` row (worker_id, started_at, attempts), sampled every 100 ms.

const env = clusterEnv();
const JOBS = 3;
let db: Db;
let victim: string | null = null;

describe.skipIf(!env)('a worker SIGKILLed mid-job', () => {
  const cluster = env ? clusterOf(env) : null!;
  beforeAll(async () => {
    db = await openClusterDb(cluster);
    await Promise.all([clusterScript('start', 'worker1'), clusterScript('start', 'worker2')]);
  });
  afterAll(async () => {
    if (victim) await clusterScript('start', victim);
    await db?.destroy();
  });

  it('leaves no job stuck: each ends completed or failed with a reason, none ran twice at once or again', async () => {
    const { key } = await createKey(cluster, 'crash');
    const startFrame = await uploadReference(cluster.url, key);
    const ids: string[] = [];
    for (let i = 0; i < JOBS; i++) ids.push(await createGeneration(cluster.url, key, { startFrameKey: startFrame, ...LONG_RENDER }));
    const sampler = new JobSampler(db, ids);

    const running = await waitRunning(sampler, 30);
    victim = workerNameOf(cluster, running.worker_id!);
    const victimPid = pidOf(cluster, victim);
    // Well into the render (the reference copied, ffmpeg running), then the crash.
    await sleep(500);
    const before = (await sampler.sampleOnce()).find((s) => s.id === running.id)!;
    expect(before, 'the job ended before the kill: the test needs a longer render').toMatchObject({ status: 'generating', worker_id: running.worker_id });
    // Until this moment the victim was alive and holding its job.
    const killedAt = new Date().toISOString();
    await clusterScript('kill', victim);
    expect(pidOf(cluster, victim)).toBeNull();

    const finals = [];
    for (const id of ids) finals.push(await waitSettled(cluster.url, key, id, 120));
    await sampler.stop();

    for (const final of finals) {
      if (final.status === 'completed') continue;
      expect(final.status, JSON.stringify(final)).toBe('failed');
      expect(final.error, JSON.stringify(final)).toMatch(/\S/);
    }
    const victimWorkerIds = new Set(sampler.samples.map((s) => s.worker_id).filter((w): w is string => w !== null && Number(w.split(':')[1]) === victimPid));
    for (const id of ids) {
      const claims = sampler.claims(id);
      const last = sampler.last(id)!;
      expect(claims.length, `${id} was never seen running`).toBeGreaterThan(0);
      // Started at most twice (KEYFRAME_GENERATION_MAX_ATTEMPTS), and counted as often as it was claimed.
      expect(last.attempts, id).toBe(claims.length);
      expect(last.attempts, id).toBeLessThanOrEqual(2);
      // A second claim only of a job the dead worker held, and only after it was killed: never two
      // workers at once.
      for (const [i, claim] of claims.entries()) {
        if (i === 0) continue;
        const previous = claims[i - 1]!;
        expect(victimWorkerIds.has(previous.workerId), `${id} was taken from a live worker: ${JSON.stringify(claims)}`).toBe(true);
        expect(claim.workerId).not.toBe(previous.workerId);
        expect(claim.startedAt > killedAt, `${id} started again while the worker holding it was alive: ${JSON.stringify(claims)}`).toBe(true);
      }
      // Once settled, never touched again.
      expect(sampler.changedAfterSettling(id), id).toEqual([]);
    }
    // The job the victim was running is the one that was taken up after the crash.
    expect(sampler.claims(running.id).length).toBe(2);
  });
});
