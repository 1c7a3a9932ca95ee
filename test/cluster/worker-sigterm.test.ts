import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import {
  clusterEnv,
  clusterOf,
  clusterScript,
  createGeneration,
  createKey,
  JobSampler,
  jsonLines,
  LONG_RENDER,
  logOf,
  openClusterDb,
  pidOf,
  sleep,
  uploadReference,
  waitRunning,
  waitSettled,
  workerNameOf,
} from './cluster.js';

// SIGTERM is a worker's orderly shutdown: it stops claiming, aborts its running job and hands it
// back (still generating, its attempt not counted), and exits 0; the other worker completes it.

const env = clusterEnv();
let db: Db;
let victim: string | null = null;

describe.skipIf(!env)('a worker SIGTERMed mid-job', () => {
  const cluster = env ? clusterOf(env) : null!;
  beforeAll(async () => {
    db = await openClusterDb(cluster);
    await Promise.all([clusterScript('start', 'worker1'), clusterScript('start', 'worker2')]);
  });
  afterAll(async () => {
    if (victim) await clusterScript('start', victim);
    await db?.destroy();
  });

  it('hands the job back without failing it, and another worker completes it', async () => {
    const { key } = await createKey(cluster, 'sigterm');
    const startFrame = await uploadReference(cluster.url, key);
    const id = await createGeneration(cluster.url, key, { startFrameKey: startFrame, ...LONG_RENDER });
    const sampler = new JobSampler(db, [id]);

    const running = await waitRunning(sampler, 30);
    victim = workerNameOf(cluster, running.worker_id!);
    const other = victim === 'worker1' ? 'worker2' : 'worker1';
    const otherPid = pidOf(cluster, other);
    const victimPid = pidOf(cluster, victim);
    await sleep(500);
    expect((await sampler.sampleOnce())[0], 'the job ended before the SIGTERM: the test needs a longer render').toMatchObject({
      status: 'generating',
      worker_id: running.worker_id,
    });

    // Returns once the process has exited (or fails after the shutdown timeout + 5 s).
    await clusterScript('stop', victim);
    expect(pidOf(cluster, victim)).toBeNull();
    const lines = jsonLines(logOf(cluster, victim)).filter((l) => l.pid === victimPid);
    const shuttingDown = lines.find((l) => l.msg.startsWith('shutting down'));
    expect(shuttingDown, 'the worker logged its shutdown').toBeDefined();
    // An orderly end: "shut down" is logged just before the exit with code 0; no job failure was logged.
    expect(lines.at(-1)?.msg).toBe('shut down');
    expect(lines.filter((l) => l.level === 50)).toEqual([]);

    const final = await waitSettled(cluster.url, key, id, 90);
    await sampler.stop();
    expect(final.status, JSON.stringify(final)).toBe('completed');
    expect(final.error).toBeNull();
    const claims = sampler.claims(id);
    expect(claims.map((c) => Number(c.workerId.split(':')[1]))).toEqual([victimPid, otherPid]);
    // Taken up by the other worker only after the victim had stopped it and handed it back.
    expect(Date.parse(claims[1]!.startedAt)).toBeGreaterThan(shuttingDown!.time);
    // The interrupted run was not counted: one attempt, the one that completed.
    expect(sampler.last(id)!.attempts).toBe(1);
    // Never failed on the way.
    expect(sampler.samples.filter((s) => s.status === 'failed')).toEqual([]);
  });
});
