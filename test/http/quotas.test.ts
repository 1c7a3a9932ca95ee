import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFixture } from '../helpers/media-fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { httpModelEntry, writeModelsFile } from '../helpers/model-worker.js';

/**
 * Per-user quotas and rate limits over real HTTP (issue 16 items 3 and 4):
 * each limit is set small through the environment, as an operator would, and
 * each refusal is a 429 `rate_limited` in the envelope with a Retry-After.
 */

const servers: TestServer[] = [];
let scratch: string;

/** A model worker that accepts every job (202) and never calls back: its jobs stay running. */
const stallingWorker = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => res.writeHead(202).end());
});

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'keyframe-quotas-'));
  await new Promise<void>((resolve) => stallingWorker.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  for (const s of servers) {
    // The helper's rm can race a file the stopping server is still removing: retry it.
    await s.stop().catch(() => rm(s.dataDir, { recursive: true, force: true, maxRetries: 5 }));
  }
  stallingWorker.closeAllConnections();
  await new Promise((resolve) => stallingWorker.close(resolve));
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

async function start(env: Record<string, string>): Promise<TestServer> {
  const server = await startTestServer(env);
  servers.push(server);
  return server;
}

/** A server whose model `stall` runs on the stalling worker, one job at a time. */
async function startWithStallingModel(env: Record<string, string>): Promise<TestServer> {
  const url = `http://127.0.0.1:${(stallingWorker.address() as AddressInfo).port}/job`;
  const file = await writeModelsFile(scratch, { stall: httpModelEntry(url, { typical: 7, busy: 20 }) });
  return start({ KEYFRAME_MODELS_FILE: file, KEYFRAME_GENERATION_CONCURRENCY: '1', ...env });
}

const presignBody = (contentLength?: number) => ({ kind: 'upload', contentType: 'image/png', ...(contentLength ? { contentLength } : {}) });

function expectRateLimited(res: { status: number; body: any; headers: Headers }, message: RegExp): number {
  expect(res.status, JSON.stringify(res.body)).toBe(429);
  expect(res.body).toEqual({ error: 'rate_limited', message: expect.stringMatching(message) });
  const retryAfter = Number(res.headers.get('retry-after'));
  expect(Number.isInteger(retryAfter)).toBe(true);
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  return retryAfter;
}

describe('presign rate limit (KEYFRAME_PRESIGNS_PER_MINUTE)', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await start({ KEYFRAME_PRESIGNS_PER_MINUTE: '5' });
  });

  it('refuses the presign past the limit with 429, Retry-After and the envelope; another user is unaffected', async () => {
    const alice = (await server.createKey('rl-alice')).key;
    const bob = (await server.createKey('rl-bob')).key;
    for (let i = 0; i < 5; i++) {
      const ok = await server.api('POST', '/api/s3/presign-upload', { key: alice, body: presignBody() });
      expect(ok.status).toBe(200);
    }
    const refused = await server.api('POST', '/api/s3/presign-upload', { key: alice, body: presignBody() });
    const retryAfter = expectRateLimited(refused, /presigns.*5 per minute/);
    expect(retryAfter).toBeLessThanOrEqual(60);

    expect((await server.api('POST', '/api/s3/presign-upload', { key: bob, body: presignBody() })).status).toBe(200);
  });

  it('counts all of a user’s keys together: a second key does not reset the budget', async () => {
    const first = (await server.createKey('rl-carol')).key;
    const second = (await server.createKey('rl-carol')).key;
    for (let i = 0; i < 5; i++) {
      expect((await server.api('POST', '/api/s3/presign-upload', { key: i % 2 ? first : second, body: presignBody() })).status).toBe(200);
    }
    expectRateLimited(await server.api('POST', '/api/s3/presign-upload', { key: second, body: presignBody() }), /presigns/);
    expectRateLimited(await server.api('POST', '/api/s3/presign-upload', { key: first, body: presignBody() }), /presigns/);
  });

  it('counts invalid presigns too, and limits no other route', async () => {
    const dave = (await server.createKey('rl-dave')).key;
    for (let i = 0; i < 5; i++) {
      expect((await server.api('POST', '/api/s3/presign-upload', { key: dave, body: { kind: 'upload' } })).status).toBe(400);
    }
    expectRateLimited(await server.api('POST', '/api/s3/presign-upload', { key: dave, body: presignBody() }), /presigns/);
    // The user's other requests are not rate limited.
    for (let i = 0; i < 8; i++) {
      const status = await server.api('GET', `/api/uploads/status?key=users/rl-dave/user-uploads/x/y.png`, { key: dave });
      expect(status.status).not.toBe(429);
      const gen = await server.api('GET', '/api/generations/gen_missing', { key: dave });
      expect(gen.status).toBe(404);
    }
  });

  it('an unauthenticated presign is a 401, not counted against anyone', async () => {
    for (let i = 0; i < 7; i++) {
      expect((await server.api('POST', '/api/s3/presign-upload', { body: presignBody() })).status).toBe(401);
    }
  });
});

describe('pending-upload and stored-bytes quotas at presign', () => {
  let server: TestServer;
  const png = readFixture('sample.png');
  beforeAll(async () => {
    server = await start({ KEYFRAME_MAX_PENDING_UPLOADS: '3', KEYFRAME_MAX_STORED_BYTES: String(png.length + 1000) });
  });

  const presign = (key: string, contentLength?: number) => server.api('POST', '/api/s3/presign-upload', { key, body: presignBody(contentLength) });
  const put = (uploadUrl: string) => fetch(uploadUrl, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: new Uint8Array(png) });

  it('refuses a presign past KEYFRAME_MAX_PENDING_UPLOADS live URLs; an upload that arrives frees its slot', async () => {
    const key = (await server.createKey('pq-erin')).key;
    const granted = [];
    for (let i = 0; i < 3; i++) {
      const res = await presign(key, png.length);
      expect(res.status).toBe(200);
      granted.push(res.body);
    }
    const retryAfter = expectRateLimited(await presign(key, 10), /pending uploads: the 3 allowed per user are all in use/);
    expect(retryAfter).toBeLessThanOrEqual(900);

    // Another user has their own quota.
    const other = (await server.createKey('pq-frank')).key;
    expect((await presign(other, 10)).status).toBe(200);

    // The object arrives: the URL is no longer pending, so a presign fits again.
    expect((await put(granted[0].upload_url)).status).toBe(200);
    expect((await presign(key, 10)).status).toBe(200);
    expectRateLimited(await presign(key, 10), /pending uploads/);
  });

  it('refuses a presign whose reservation would pass KEYFRAME_MAX_STORED_BYTES, exactly', async () => {
    const key = (await server.createKey('pq-gina')).key;
    const limit = png.length + 1000;
    expect((await presign(key, limit - 400)).status).toBe(200);
    expectRateLimited(await presign(key, 401), /Storage quota.*would reserve 401/);
    expect((await presign(key, 400)).status).toBe(200);
    expectRateLimited(await presign(key, 1), /Storage quota/);
  });

  it('counts stored bytes once the upload has arrived, and a presign without contentLength reserves max_bytes', async () => {
    const key = (await server.createKey('pq-hank')).key;
    const first = await presign(key, png.length);
    expect(first.status).toBe(200);
    expect((await put(first.body.upload_url)).status).toBe(200);
    const status = await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(first.body.s3_key)}`, { key });
    expect(status.body.state).toBe('verified');
    // png.length stored: 1000 bytes are left, not a byte more.
    expectRateLimited(await presign(key, 1001), /Storage quota exceeded: \d+ bytes stored/);
    expect((await presign(key, 1000)).status).toBe(200);
    // Without contentLength the reservation is max_bytes (20 MiB for an image), far over what is left.
    const other = (await server.createKey('pq-ivy')).key;
    expectRateLimited(await presign(other), /would reserve 20971520/);
  });
});

describe('generation limits', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startWithStallingModel({ KEYFRAME_MAX_ACTIVE_GENERATIONS: '2', KEYFRAME_GENERATIONS_PER_HOUR: '3' });
  });

  const create = (key: string, count: number) => server.api('POST', '/api/generations', { key, body: { prompt: 'p', modelName: 'stall', count } });
  const rowsOf = (userId: string) => server.db.selectFrom('generations').select(['id', 'status']).where('user_id', '=', userId).execute();

  it('refuses a create whose count would pass KEYFRAME_MAX_ACTIVE_GENERATIONS, whole; another user is unaffected', async () => {
    const key = (await server.createKey('gl-jo')).key;
    expectRateLimited(await create(key, 3), /in progress.*limit 2/);
    expect(await rowsOf('gl-jo')).toHaveLength(0);

    expect((await create(key, 2)).status).toBe(200);
    const refused = await create(key, 1);
    // Retry-After: the model's typical latency, when one of them may have finished.
    expect(expectRateLimited(refused, /2 queued or running/)).toBe(7);
    expect(await rowsOf('gl-jo')).toHaveLength(2);

    const other = (await server.createKey('gl-kai')).key;
    expect((await create(other, 1)).status).toBe(200);
  });

  it('refuses past KEYFRAME_GENERATIONS_PER_HOUR, with Retry-After from when the oldest leaves the hour', async () => {
    const key = (await server.createKey('gl-lu')).key;
    expect((await create(key, 2)).status).toBe(200);
    // Finished generations still count in the hour (they leave the active count).
    await server.db.updateTable('generations').set({ status: 'failed', error: 'test' }).where('user_id', '=', 'gl-lu').execute();
    expect((await create(key, 1)).status).toBe(200);
    await server.db.updateTable('generations').set({ status: 'failed', error: 'test' }).where('user_id', '=', 'gl-lu').execute();
    const retryAfter = expectRateLimited(await create(key, 1), /3 created in the last hour.*limit 3 per hour/);
    expect(retryAfter).toBeGreaterThan(3000);
    expect(retryAfter).toBeLessThanOrEqual(3600);
    expect(await rowsOf('gl-lu')).toHaveLength(3);
  });

  it('concurrent creates of one user never pass the active limit together', async () => {
    const key = (await server.createKey('gl-mo')).key;
    const answers = await Promise.all(Array.from({ length: 6 }, () => create(key, 1)));
    expect(answers.filter((a) => a.status === 200)).toHaveLength(2);
    expect(answers.filter((a) => a.status === 429)).toHaveLength(4);
    expect(await rowsOf('gl-mo')).toHaveLength(2);
  });
});
