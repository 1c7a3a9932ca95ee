import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { ApiKeys } from '../../src/domain/api-keys.js';
import { startApi, type RunningServer } from '../../src/start/api.js';
import { testDatabase, type TestDatabase } from '../helpers/database.js';
import { REDIS_TEST_URL, redisForTests, testRedis, type TestRedis } from '../helpers/redis.js';
import { assertRgwReachable, removeBucket, rgwForTests, s3ServerEnv, uniqueBucketName } from '../helpers/rgw.js';
import { tcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

/**
 * The presign limits over real HTTP on two API nodes (issue 12): two `api` roles in this process,
 * on one database, one Redis prefix and one RGW bucket, as two nodes behind a load balancer are.
 * A user's presigns alternate between the nodes; the limits must hold for the pair, not per node.
 */
const REDIS = await redisForTests('presign limits across API nodes');
const rgw = await rgwForTests('presign limits across API nodes');

const PRESIGN = { kind: 'upload', contentType: 'image/png' };
/** Lifted unless a test sets it: each test is about one limit. */
const LIFTED = { KEYFRAME_PRESIGNS_PER_MINUTE: '1000000', KEYFRAME_MAX_PENDING_UPLOADS: '1000000', KEYFRAME_MAX_STORED_BYTES: String(2 ** 50) };

let database: TestDatabase | undefined;
let redis: TestRedis | undefined;
let bucket: string | undefined;
let nodes: RunningServer[] = [];
let proxy: TcpProxy | undefined;

afterEach(async () => {
  await Promise.allSettled(nodes.map((n) => n.close()));
  nodes = [];
  await proxy?.close();
  proxy = undefined;
  await redis?.dispose();
  await database?.dispose();
  if (bucket) await removeBucket(rgw, bucket);
  redis = database = bucket = undefined;
});

/** `count` api nodes on one database, bucket and Redis prefix (`redisUrl` to reach Redis another way); the key of user `alice`. */
async function startNodes(count: number, env: Record<string, string>, redisUrl?: string): Promise<string> {
  assertRgwReachable(rgw);
  database = await testDatabase('presign-cluster');
  redis = await testRedis('presign-cluster');
  bucket = uniqueBucketName('cluster');
  const config = loadConfig({
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'silent',
    KEYFRAME_ROLE: 'api',
    // What every node of a cluster on PostgreSQL must share (src/config.ts multiNodeProblems).
    KEYFRAME_SIGNING_SECRET: 'cluster-test-signing-secret-0123456789abcdef',
    KEYFRAME_PUBLIC_URL: 'http://127.0.0.1:9',
    ...database.env,
    ...s3ServerEnv(rgw, bucket),
    ...redis.env,
    ...(redisUrl ? { KEYFRAME_REDIS_URL: redisUrl } : {}),
    ...LIFTED,
    ...env,
  });
  // One after the other: the first migrates the database.
  for (let i = 0; i < count; i++) nodes.push(await startApi(config));
  return (await new ApiKeys(nodes[0]!.db).createKey({ userId: 'alice' })).key;
}

async function presign(node: RunningServer, key: string): Promise<{ status: number; body: any; retryAfter: string | null }> {
  const res = await fetch(`${node.url}/api/s3/presign-upload`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(PRESIGN),
    signal: AbortSignal.timeout(15_000),
  });
  return { status: res.status, body: await res.json(), retryAfter: res.headers.get('retry-after') };
}

/** `total` presigns at once, alternating between the nodes; the answers by status. */
async function burst(key: string, total: number): Promise<Map<number, { body: any; retryAfter: string | null }[]>> {
  const answers = await Promise.all(Array.from({ length: total }, (_, i) => presign(nodes[i % nodes.length]!, key)));
  const byStatus = new Map<number, { body: any; retryAfter: string | null }[]>();
  for (const { status, ...rest } of answers) byStatus.set(status, [...(byStatus.get(status) ?? []), rest]);
  return byStatus;
}

function expectRefusals(refused: { body: any; retryAfter: string | null }[] | undefined, count: number, message: RegExp): void {
  expect(refused ?? []).toHaveLength(count);
  for (const r of refused ?? []) {
    expect(r.body).toEqual({ error: 'rate_limited', message: expect.stringMatching(message) });
    expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1);
  }
}

describe.skipIf(REDIS.skip || rgw.skip)('presign limits on two API nodes sharing one Redis', () => {
  it('the presign rate limit holds for both nodes together: of 16 presigns, exactly 10 a minute', async () => {
    const key = await startNodes(2, { KEYFRAME_PRESIGNS_PER_MINUTE: '10' });
    const answers = await burst(key, 16);
    expect([...answers.keys()].sort()).toEqual([200, 429]);
    expect(answers.get(200)).toHaveLength(10);
    expectRefusals(answers.get(429), 6, /Too many presigns: at most 10 per minute per user/);
    // One counter for the pair, under the installation's prefix.
    expect(await redis!.client.get(`${redis!.config.prefix}:presign-rate:POST/api/s3/presign-upload-alice`)).toBe('16');
  });

  it('the pending-upload limit holds for both nodes together: of 20 presigns, exactly 5', async () => {
    const key = await startNodes(2, { KEYFRAME_MAX_PENDING_UPLOADS: '5' });
    const answers = await burst(key, 20);
    expect([...answers.keys()].sort()).toEqual([200, 429]);
    expect(answers.get(200)).toHaveLength(5);
    expectRefusals(answers.get(429), 15, /Too many pending uploads: the 5 allowed per user are all in use/);
    const rows = await nodes[1]!.db.selectFrom('uploads').select('s3_key').where('user_id', '=', 'alice').execute();
    expect(rows).toHaveLength(5);
  });

  it('fails closed while Redis is unreachable: a prompt 500 in the envelope, never a presign past the limits; served again once Redis is back', async () => {
    const target = new URL(REDIS_TEST_URL);
    proxy = await tcpProxy({ host: target.hostname, port: Number(target.port || 6379) });
    const key = await startNodes(1, { KEYFRAME_PRESIGNS_PER_MINUTE: '100', KEYFRAME_MAX_PENDING_UPLOADS: '3' }, `redis://127.0.0.1:${proxy.port}`);
    expect((await presign(nodes[0]!, key)).status).toBe(200);

    await proxy.cut();
    for (let i = 0; i < 3; i++) {
      // Bounded by presign's 15 s timeout: an answer at all shows the request did not wait for Redis.
      expect(await presign(nodes[0]!, key)).toEqual({ status: 500, body: { error: 'server_error', message: 'Internal server error' }, retryAfter: null });
    }

    await proxy.restore();
    let answer = await presign(nodes[0]!, key);
    // The limits' client reconnects on its own (ioredis's back-off): until it has, presigns still fail closed.
    for (let i = 0; i < 100 && answer.status === 500; i++) {
      await new Promise((r) => setTimeout(r, 100));
      answer = await presign(nodes[0]!, key);
    }
    expect(answer.status).toBe(200);
    expect((await presign(nodes[0]!, key)).status).toBe(200);
    // One before the cut and two after fill the three slots: nothing was granted while Redis was away.
    expectRefusals([await presign(nodes[0]!, key)], 1, /Too many pending uploads: the 3 allowed per user are all in use/);
  });
});
