import { describe } from 'vitest';
import { BullmqQueue } from '../../src/queue/bullmq-queue.js';
import { InProcessQueue } from '../../src/queue/in-process-queue.js';
import { openRedis, type RedisHandle } from '../../src/redis/connection.js';
import { redisForTests, testRedis } from '../helpers/redis.js';
import { queueBehaviour } from './support/queue-behaviour.js';

/**
 * One behaviour, both queue kinds (src/queue/job-queue.ts), on the project's dialect: the
 * database queue, and BullMQ on the test Redis (a fresh key prefix per test, each queue on a
 * Redis client of its own). Leases are long here: nothing dies in this suite.
 */
const REDIS = await redisForTests('queue behaviour (bullmq)');

queueBehaviour('database', async () => ({
  make: async (db, options) => new InProcessQueue(db, { ...options, leaseMs: 10_000, pollMs: 50 }),
  dispose: async () => {},
}));

describe.skipIf(REDIS.skip)('on Redis', () => {
  queueBehaviour('bullmq', async () => {
    const redis = await testRedis('queue-behaviour');
    const handles: RedisHandle[] = [];
    return {
      async make(db, options) {
        const handle = await openRedis(redis.config, { onError: (err) => options.onError(err, '(redis)') });
        handles.push(handle);
        return new BullmqQueue(db, { ...options, redis: handle, leaseMs: 10_000 });
      },
      async dispose() {
        await Promise.allSettled(handles.map((h) => h.close()));
        await redis.dispose();
      },
    };
  });
});
