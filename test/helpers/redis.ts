import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Redis } from 'ioredis';
import type { RedisConfig } from '../../src/config.js';

/**
 * The Redis the Redis tests run against: the machine's, at 127.0.0.1:6379 unless
 * KEYFRAME_TEST_REDIS_URL names another. Each test (or file) gets its own key
 * prefix, so tests sharing one Redis never see each other's queues or counters,
 * and `dispose` deletes exactly that prefix's keys.
 */
export const REDIS_TEST_URL = process.env.KEYFRAME_TEST_REDIS_URL || 'redis://127.0.0.1:6379';

/** What starts Redis on the developer and CI machines (named in every "Redis missing" message). */
export const REDIS_START_COMMAND =
  'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log';

export interface TestRedis {
  /** The settings a server or queue under test takes (`KEYFRAME_REDIS_URL`, a prefix of this test's own). */
  config: RedisConfig;
  /** Server environment for this Redis: KEYFRAME_REDIS_URL and KEYFRAME_REDIS_PREFIX. */
  env: Record<string, string>;
  /** A client of the test's own, for inspecting keys (closed by `dispose`). */
  client: Redis;
  /** Deletes every key under the prefix and closes the client. */
  dispose(): Promise<void>;
}

/**
 * Whether Redis answers, probed once per file (1 s). Locally a missing Redis
 * makes the Redis tests skip, loudly; under CI=true they fail instead: use
 * `describe.skipIf(REDIS.skip)` and call `testRedis()` in the tests, which
 * throws naming the start command when Redis is down.
 */
export async function redisForTests(suite: string): Promise<{ skip: boolean; reachable: boolean }> {
  const reachable = await redisAnswers(REDIS_TEST_URL);
  const skip = !reachable && process.env.CI !== 'true';
  if (skip) {
    console.warn(
      `\n!!! ${suite}: REDIS TESTS SKIPPED: nothing answers at ${REDIS_TEST_URL}.\n` +
        `!!! Start Redis with: ${REDIS_START_COMMAND}\n` +
        `!!! (under CI=true these tests fail instead of skipping)\n`,
    );
  }
  return { skip, reachable };
}

/** A fresh prefix on the test Redis; throws (naming the start command) when Redis does not answer. */
export async function testRedis(name: string): Promise<TestRedis> {
  if (!(await redisAnswers(REDIS_TEST_URL))) {
    throw new Error(`Redis unreachable at ${REDIS_TEST_URL} (the Redis tests need it). Start it with: ${REDIS_START_COMMAND}`);
  }
  const prefix = `kf-test-${name.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 30)}-${process.pid}-${randomBytes(4).toString('hex')}`;
  const client = new Redis(REDIS_TEST_URL, { maxRetriesPerRequest: 3 });
  return {
    config: { url: REDIS_TEST_URL, prefix },
    env: { KEYFRAME_REDIS_URL: REDIS_TEST_URL, KEYFRAME_REDIS_PREFIX: prefix },
    client,
    async dispose() {
      try {
        let cursor = '0';
        do {
          const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
          cursor = next;
          if (keys.length > 0) await client.del(...keys);
        } while (cursor !== '0');
      } finally {
        client.disconnect();
      }
    },
  };
}

/** Whether Redis answers one PING over a plain socket within `timeoutMs`: no client, no reconnect loop (tests, cluster set-up, bench). */
export function redisAnswers(url: string, timeoutMs = 1000): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname.replace(/^\[|\]$/g, ''), port: Number(port || 6379) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')));
  });
}
