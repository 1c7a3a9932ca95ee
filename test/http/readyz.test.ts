import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { POSTGRES_ADMIN_URL, TEST_DIALECT } from '../helpers/database.js';
import { assertRgwReachable, removeBucket, rgwForTests, s3ServerEnv, uniqueBucketName } from '../helpers/rgw.js';
import { redisForTests, testRedis, type TestRedis } from '../helpers/redis.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { tcpProxy } from '../helpers/tcp-proxy.js';

// /healthz is liveness (the process answers); /readyz is readiness: the database and the store
// answer too, each within a short timeout, or 503 names what failed (docs/api.md).

const rgw = await rgwForTests('readyz test');
const redis = await redisForTests('readyz test (Redis check)');
const redises: TestRedis[] = [];

const servers: TestServer[] = [];
const buckets: string[] = [];
afterAll(async () => {
  await Promise.allSettled(servers.map((s) => s.stop()));
  for (const bucket of buckets) await removeBucket(rgw, bucket).catch(() => {});
  for (const r of redises) await r.dispose();
});

async function start(env: Record<string, string> = {}): Promise<TestServer> {
  const server = await startTestServer(env);
  servers.push(server);
  return server;
}

async function readyz(server: TestServer): Promise<{ status: number; body: any; headers: Headers; elapsedMs: number }> {
  const started = Date.now();
  const res = await server.api('GET', '/readyz');
  return { ...res, elapsedMs: Date.now() - started };
}

async function admin(query: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query(query);
  } finally {
    await client.end();
  }
}

describe('GET /readyz', () => {
  it('answers 200 with each check when the database and the disk store answer; /healthz stays liveness', async () => {
    const server = await start();
    const res = await readyz(server);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.body).toEqual({
      ok: true,
      checks: { database: { ok: true, ms: expect.any(Number) }, store: { ok: true, ms: expect.any(Number) } },
    });
    expect((await server.api('GET', '/healthz')).body).toEqual({ ok: true });
  });

  it.runIf(TEST_DIALECT === 'postgres')('answers 503 naming the database while PostgreSQL refuses this database, and 200 once it is back', async () => {
    const server = await start();
    const name = new URL(server.database.url!).pathname.slice(1);
    expect((await readyz(server)).status).toBe(200);
    await admin(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS false`);
    try {
      await admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${name}'`);
      const res = await readyz(server);
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({
        ok: false,
        error: 'not_ready',
        message: 'not ready: database failed',
        failed: ['database'],
        checks: { database: { ok: false, error: expect.stringMatching(/^(error|timeout)$/) }, store: { ok: true } },
      });
      // Bounded: a check never holds the probe past its timeout (2 s) by much.
      expect(res.elapsedMs).toBeLessThan(4000);
    } finally {
      await admin(`ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS true`);
    }
    let back = await readyz(server);
    for (let i = 0; i < 50 && back.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      back = await readyz(server);
    }
    expect(back.status).toBe(200);
  });

  it.runIf(TEST_DIALECT === 'sqlite')('answers 503 naming the database once the database is closed under the server', async () => {
    const server = await start();
    await server.db.destroy();
    const res = await readyz(server);
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ ok: false, failed: ['database'], checks: { database: { ok: false }, store: { ok: true } } });
  });

  it.skipIf(rgw.skip)('answers 200 on S3 (a HEAD of a missing key is "missing"), and 503 naming the store once the store is unreachable', async () => {
    assertRgwReachable(rgw);
    const endpoint = new URL(rgw.endpoint);
    const forwarder = await tcpProxy({ host: endpoint.hostname, port: Number(endpoint.port || 80) });
    const bucket = uniqueBucketName('readyz');
    buckets.push(bucket);
    try {
      const server = await start(s3ServerEnv({ ...rgw, endpoint: `http://127.0.0.1:${forwarder.port}` }, bucket));
      const ok = await readyz(server);
      expect(ok.status).toBe(200);
      expect(ok.body.checks.store).toEqual({ ok: true, ms: expect.any(Number) });

      await forwarder.cut();
      const res = await readyz(server);
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({
        ok: false,
        error: 'not_ready',
        message: 'not ready: store failed',
        failed: ['store'],
        checks: { database: { ok: true }, store: { ok: false, error: expect.stringMatching(/^(error|timeout)$/) } },
      });
      expect(res.elapsedMs).toBeLessThan(4000);
      // Nothing about the store's address or credentials reaches an anonymous caller.
      expect(JSON.stringify(res.body)).not.toContain('127.0.0.1');
      expect(JSON.stringify(res.body)).not.toContain(rgw.accessKeyId);
    } finally {
      await forwarder.close();
    }
  });

  it.skipIf(redis.skip)('checks Redis when it is configured: 503 naming redis while it does not answer, 200 once it is back', async () => {
    const r = await testRedis('readyz');
    redises.push(r);
    const target = new URL(r.config.url);
    const proxy = await tcpProxy({ host: target.hostname, port: Number(target.port || 6379) });
    try {
      const server = await start({ ...r.env, KEYFRAME_REDIS_URL: `redis://127.0.0.1:${proxy.port}` });
      const ok = await readyz(server);
      expect(ok.status).toBe(200);
      expect(ok.body.checks.redis).toEqual({ ok: true, ms: expect.any(Number) });

      await proxy.cut();
      const res = await readyz(server);
      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({
        ok: false,
        failed: ['redis'],
        checks: { database: { ok: true }, store: { ok: true }, redis: { ok: false, error: expect.stringMatching(/^(error|timeout)$/) } },
      });
      expect(res.elapsedMs).toBeLessThan(4000);

      await proxy.restore();
      let back = await readyz(server);
      for (let i = 0; i < 50 && back.status !== 200; i++) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        back = await readyz(server);
      }
      expect(back.status).toBe(200);
    } finally {
      await proxy.close();
    }
  });
});
