/**
 * A consumer in a process of its own, for test/queue/two-workers.test.ts and
 * test/queue/bullmq.test.ts: it opens the database named by KEYFRAME_CHILD_TARGET
 * (JSON: a DatabaseTarget), starts a queue whose handler appends each job id it
 * starts to KEYFRAME_CHILD_STARTS (one line each, written before the job "runs")
 * and then never finishes, and prints `ready <workerId>` once started. The queue
 * is an InProcessQueue, or with KEYFRAME_CHILD_REDIS (JSON: a RedisConfig) a
 * BullmqQueue on that Redis. The test SIGKILLs it: a consumer that dies holding
 * jobs, with no chance to hand them back.
 */
import { appendFileSync } from 'node:fs';
import type { RedisConfig } from '../../../src/config.js';
import { openDatabase, type DatabaseTarget } from '../../../src/db/database.js';
import { BullmqQueue } from '../../../src/queue/bullmq-queue.js';
import { InProcessQueue } from '../../../src/queue/in-process-queue.js';
import { openRedis } from '../../../src/redis/connection.js';

const target = JSON.parse(process.env.KEYFRAME_CHILD_TARGET!) as DatabaseTarget;
const starts = process.env.KEYFRAME_CHILD_STARTS!;
const db = await openDatabase(target, { migrate: false });
const onError = (err: unknown, id: string) => process.stderr.write(`child error (${id}): ${String(err)}\n`);
const options = {
  concurrency: Number(process.env.KEYFRAME_CHILD_CONCURRENCY ?? 1),
  maxAttempts: Number(process.env.KEYFRAME_CHILD_MAX_ATTEMPTS ?? 2),
  leaseMs: Number(process.env.KEYFRAME_CHILD_LEASE_MS ?? 1000),
  onError,
};
const queue = process.env.KEYFRAME_CHILD_REDIS
  ? new BullmqQueue(db, { ...options, redis: await openRedis(JSON.parse(process.env.KEYFRAME_CHILD_REDIS) as RedisConfig, { onError: (err) => onError(err, '(redis)') }) })
  : new InProcessQueue(db, { ...options, pollMs: 50 });
await queue.start({
  run: (id, signal) => {
    appendFileSync(starts, `${id}\n`);
    return new Promise<void>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
  },
  abandon: async (id, reason) => {
    await db.updateTable('generations').set({ status: 'failed', error: reason }).where('id', '=', id).execute();
  },
});
process.stdout.write(`ready ${queue.workerId}\n`);
