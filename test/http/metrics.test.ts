import { mkdtemp, rm } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { ApiKeys } from '../../src/domain/api-keys.js';
import { freePort } from '../../src/free-port.js';
import { startApi, type RunningServer } from '../../src/start/api.js';
import { startWorker, type RunningWorker } from '../../src/start/worker.js';
import { testDatabase, type TestDatabase } from '../helpers/database.js';
import { waitForGeneration } from '../helpers/generations.js';
import { readFixture } from '../helpers/media-fixtures.js';
import { parseExposition, type Exposition } from '../helpers/prometheus-text.js';
import { assertRgwReachable, removeBucket, rgwForTests, s3ServerEnv, uniqueBucketName } from '../helpers/rgw.js';
import { callApi, startTestServer, type TestServer } from '../helpers/server.js';
import { startReceiver, until, type Receiver } from '../webhooks/support/deliveries.js';

// GET /metrics on real servers over real HTTP: the token on the API port, the tokenless listener
// (KEYFRAME_METRICS_LISTEN) of every role, and a walk-through that moves each counter.

const TOKEN = 'metrics-test-token-0123456789abcdef';
const PNG = readFixture('sample.png');
const rgw = await rgwForTests('metrics of the worker role');

async function scrapeUrl(url: string, headers: Record<string, string> = {}): Promise<{ status: number; type: string | null; text: string }> {
  const res = await fetch(url, { headers });
  return { status: res.status, type: res.headers.get('content-type'), text: await res.text() };
}

async function scrape(url: string, headers: Record<string, string> = {}): Promise<Exposition> {
  const res = await scrapeUrl(url, headers);
  expect(res.status, res.text).toBe(200);
  expect(res.type).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parseExposition(res.text);
}

/** How much `name` (summed over the samples whose labels include `labels`) moved from `before` to `after`. */
const moved = (before: Exposition, after: Exposition, name: string, labels: Record<string, string> = {}) =>
  after.sum(name, labels) - before.sum(name, labels);

describe('an embedded server with a metrics token and a metrics listener', () => {
  let server: TestServer;
  let receiver: Receiver;
  let listenerUrl: string;
  let key: string;
  const bearer = { authorization: `Bearer ${TOKEN}` };
  const scrapeApi = () => scrape(`${server.url}/metrics`, bearer);

  beforeAll(async () => {
    const listenPort = await freePort();
    listenerUrl = `http://127.0.0.1:${listenPort}`;
    receiver = await startReceiver(() => 200);
    server = await startTestServer({
      KEYFRAME_METRICS_TOKEN: TOKEN,
      KEYFRAME_METRICS_LISTEN: `127.0.0.1:${listenPort}`,
      KEYFRAME_WEBHOOK_ALLOW_PRIVATE: 'true',
    });
    key = (await server.createKey('alice')).key;
  });

  afterAll(async () => {
    await server?.stop();
    await receiver?.close();
  });

  it('moves every counter through presign, upload, verification, generation and webhook', async () => {
    const before = await scrapeApi();

    const presigned = await server.api('POST', '/api/s3/presign-upload', { key, body: { kind: 'upload', contentType: 'image/png', contentLength: PNG.length } });
    expect(presigned.status).toBe(200);
    const put = await fetch(presigned.body.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: new Uint8Array(PNG) });
    expect(put.status).toBe(200);
    const statusPath = `/api/uploads/status?key=${encodeURIComponent(presigned.body.s3_key)}`;
    let state = '';
    for (let i = 0; i < 100 && state !== 'verified'; i++) {
      const status = await server.api('GET', statusPath, { key });
      expect(status.status).toBe(200);
      state = status.body.state;
      expect(state).not.toBe('rejected');
      if (state !== 'verified') await new Promise((r) => setTimeout(r, 100));
    }
    expect(state).toBe('verified');

    const created = await server.api('POST', '/api/generations', {
      key,
      body: { prompt: 'metrics', modelName: 'keyframe-local', resolution: '480p', duration: '1s', startFrameKey: presigned.body.s3_key, webhook_url: receiver.url },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const id = created.body.generations[0].generation_id as string;
    const done = await waitForGeneration(server.api, key, id);
    expect(done.body.status).toBe('completed');
    await until(() => receiver.requests.some((r) => r.answered === 200), 'the webhook delivery');
    // The attempt is counted once its outcome is recorded, just after the receiver answered.
    let after = await scrapeApi();
    for (let i = 0; i < 100 && moved(before, after, 'keyframe_webhook_attempts_total', { outcome: 'delivered' }) === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      after = await scrapeApi();
    }

    // Requests, by route template and status.
    expect(moved(before, after, 'http_requests_total', { method: 'POST', route: '/api/s3/presign-upload', status: '200' })).toBe(1);
    expect(moved(before, after, 'http_requests_total', { method: 'PUT', status: '200' })).toBe(1);
    expect(moved(before, after, 'http_requests_total', { method: 'GET', route: '/api/uploads/status', status: '200' })).toBeGreaterThanOrEqual(1);
    expect(moved(before, after, 'http_requests_total', { method: 'POST', route: '/api/generations', status: '200' })).toBe(1);
    expect(moved(before, after, 'http_requests_total', { method: 'GET', route: '/api/generations/:id', status: '200' })).toBeGreaterThanOrEqual(1);
    expect(moved(before, after, 'http_request_duration_seconds_count', { method: 'POST', route: '/api/generations' })).toBe(1);
    // The scrape before this one was counted too: /metrics is a route like the others.
    expect(moved(before, after, 'http_requests_total', { method: 'GET', route: '/metrics', status: '200' })).toBeGreaterThanOrEqual(1);

    // Uploads: the presign, the verdict, its time and the bytes.
    expect(moved(before, after, 'keyframe_presigns_total', { family: 'image', via: 'presign' })).toBe(1);
    expect(moved(before, after, 'keyframe_uploads_settled_total', { state: 'verified', family: 'image' })).toBe(1);
    expect(moved(before, after, 'keyframe_ingested_bytes_total', { family: 'image' })).toBeGreaterThanOrEqual(PNG.length);
    expect(moved(before, after, 'keyframe_verification_duration_seconds_count', { outcome: 'verified' })).toBe(1);
    expect(moved(before, after, 'keyframe_verification_duration_seconds_sum', { outcome: 'verified' })).toBeGreaterThan(0);

    // The generation and its webhook.
    expect(moved(before, after, 'keyframe_generations_settled_total', { status: 'completed', model: 'keyframe-local' })).toBe(1);
    expect(moved(before, after, 'keyframe_generation_duration_seconds_count', { status: 'completed', model: 'keyframe-local' })).toBe(1);
    expect(moved(before, after, 'keyframe_generation_duration_seconds_sum', { status: 'completed', model: 'keyframe-local' })).toBeGreaterThan(0);
    expect(moved(before, after, 'keyframe_webhook_attempts_total', { outcome: 'delivered' })).toBe(1);

    // The queue depth, read at the scrape: nothing left waiting or running.
    expect(after.value('keyframe_queue_depth', { state: 'queued' })).toBe(0);
    expect(after.value('keyframe_queue_depth', { state: 'running' })).toBe(0);

    // No label ever carries a key, a user or an object key.
    const raw = (await scrapeUrl(`${server.url}/metrics`, bearer)).text;
    for (const secret of [key, 'alice', presigned.body.s3_key, id]) expect(raw).not.toContain(secret);
  });

  it("counts the upload URLs of Uppy's routes by how they were issued", async () => {
    const before = await scrapeApi();
    const params = await server.api('GET', '/api/s3/params?type=video%2Fmp4&filename=clip.mp4', { key });
    expect(params.status, JSON.stringify(params.body)).toBe(200);
    const multipart = await server.api('POST', '/api/s3/multipart', { key, body: { type: 'audio/mpeg', filename: 'song.mp3' } });
    expect(multipart.status, JSON.stringify(multipart.body)).toBe(200);
    const after = await scrapeApi();
    expect(moved(before, after, 'keyframe_presigns_total', { family: 'video', via: 'params' })).toBe(1);
    expect(moved(before, after, 'keyframe_presigns_total', { family: 'audio', via: 'multipart' })).toBe(1);
    expect(moved(before, after, 'keyframe_presigns_total', { via: 'presign' })).toBe(0);
    expect(moved(before, after, 'http_requests_total', { method: 'POST', route: '/api/s3/multipart', status: '200' })).toBe(1);
  });

  it('labels a request that matched no route `unmatched`, never with its path', async () => {
    const before = await scrapeApi();
    const path = `/no/such/path-${Date.now()}`;
    expect((await fetch(server.url + path)).status).toBe(404);
    const after = await scrapeApi();
    expect(moved(before, after, 'http_requests_total', { method: 'GET', route: 'unmatched', status: '404' })).toBe(1);
    expect(after.samples.some((s) => Object.values(s.labels).some((v) => v.includes('no/such')))).toBe(false);
  });

  it('answers 401 in the envelope without the token or with a wrong one', async () => {
    const attempts: Record<string, string>[] = [{}, { authorization: 'Bearer wrong-token-0123456789abcdef' }, { authorization: `Bearer ${TOKEN}x` }, { authorization: TOKEN }, { authorization: `Basic ${TOKEN}` }];
    for (const headers of attempts) {
      const res = await fetch(`${server.url}/metrics`, { headers });
      expect(res.status, JSON.stringify(headers)).toBe(401);
      expect(await res.json()).toEqual({ error: 'unauthorized', message: 'Invalid or missing metrics token' });
    }
    // An API key is not the metrics token.
    expect((await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(401);
  });

  it('is in the OpenAPI document, with its security scheme and a text/plain answer', async () => {
    const doc = await server.api('GET', '/openapi.json');
    expect(doc.status).toBe(200);
    const operation = doc.body.paths['/metrics'].get;
    expect(operation).toMatchObject({ operationId: 'metrics', tags: ['operations'], security: [{ bearer: [] }], summary: expect.any(String) });
    expect(operation.responses['200'].content['text/plain']).toBeDefined();
  });

  it('serves the same metrics on the listener without a token, and nothing else there', async () => {
    const listened = await scrape(`${listenerUrl}/metrics`);
    expect(listened.types.get('keyframe_presigns_total')).toBe('counter');
    // One registry: what the API port counted, the listener shows.
    expect(listened.sum('keyframe_presigns_total')).toBeGreaterThanOrEqual(1);
    expect(listened.value('process_resident_memory_bytes')).toBeGreaterThan(0);
    expect((await fetch(`${listenerUrl}/api/generations/x`)).status).toBe(404);
    expect((await fetch(`${listenerUrl}/`)).status).toBe(404);
    expect((await fetch(`${listenerUrl}/metrics`, { method: 'POST' })).status).toBe(405);
  });
});

describe('a server without a metrics token', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer();
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('has no /metrics on the API port: 404, with or without a token', async () => {
    for (const headers of [{}, { authorization: `Bearer ${TOKEN}` }] as Record<string, string>[]) {
      const res = await fetch(`${server.url}/metrics`, { headers });
      expect(res.status).toBe(404);
      expect(await res.json()).toMatchObject({ error: 'not_found' });
    }
  });
});

describe('a metrics listener that cannot bind', () => {
  it('fails the start-up, naming the address in use', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as AddressInfo;
    try {
      await expect(startTestServer({ KEYFRAME_METRICS_LISTEN: `127.0.0.1:${port}` })).rejects.toMatchObject({ code: 'EADDRINUSE', port });
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});

describe.skipIf(rgw.skip)('the worker role: its metrics listener serves the generation metrics', () => {
  let database: TestDatabase;
  let bucket: string;
  let scratch: string;
  let apiNode: RunningServer;
  let workerNode: RunningWorker;
  let receiver: Receiver;
  let workerListener: string;
  let key: string;

  const api = (method: string, pathname: string, options: { key?: string; body?: unknown } = {}) =>
    callApi(apiNode.url, method, pathname, { key, ...options });

  beforeAll(async () => {
    assertRgwReachable(rgw);
    database = await testDatabase('metrics-roles');
    bucket = uniqueBucketName('metrics');
    scratch = await mkdtemp(path.join(tmpdir(), 'keyframe-metrics-roles-'));
    receiver = await startReceiver(() => 200);
    const [port, workerMetricsPort] = [await freePort(), await freePort()];
    workerListener = `http://127.0.0.1:${workerMetricsPort}`;
    const postgres = database.dialect === 'postgres';
    const shared = {
      HOST: '127.0.0.1',
      LOG_LEVEL: 'silent',
      ...database.env,
      ...s3ServerEnv(rgw, bucket),
      KEYFRAME_WEBHOOK_ALLOW_PRIVATE: 'true',
      KEYFRAME_PUBLIC_URL: `http://127.0.0.1:${port}`,
      ...(postgres ? { KEYFRAME_SIGNING_SECRET: 'metrics-roles-test-signing-secret-0123456789' } : {}),
    };
    apiNode = await startApi(loadConfig({ ...shared, KEYFRAME_ROLE: 'api', PORT: String(port), KEYFRAME_METRICS_TOKEN: TOKEN }));
    workerNode = await startWorker(
      loadConfig({
        ...shared,
        KEYFRAME_ROLE: 'worker',
        PORT: '0',
        KEYFRAME_METRICS_LISTEN: `127.0.0.1:${workerMetricsPort}`,
        // On PostgreSQL each node has its own data dir; on SQLite the data dir is the database.
        ...(postgres ? { KEYFRAME_DATA_DIR: path.join(scratch, 'worker-data') } : {}),
      }),
    );
    key = (await new ApiKeys(apiNode.db).createKey({ userId: 'wanda' })).key;
  });

  afterAll(async () => {
    await workerNode?.close();
    await apiNode?.close();
    await receiver?.close();
    await database?.dispose();
    if (bucket) await removeBucket(rgw, bucket).catch(() => {});
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('counts the job and its webhook where they ran; the api node counted the upload', async () => {
    const before = await scrape(`${workerListener}/metrics`);
    const apiBefore = await scrape(`${apiNode.url}/metrics`, { authorization: `Bearer ${TOKEN}` });
    const presigned = await api('POST', '/api/s3/presign-upload', { body: { kind: 'upload', contentType: 'image/png' } });
    expect(presigned.status).toBe(200);
    const put = await fetch(presigned.body.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: new Uint8Array(PNG) });
    expect(put.status).toBe(200);
    const created = await api('POST', '/api/generations', {
      body: { prompt: 'roles', modelName: 'keyframe-local', resolution: '480p', duration: '1s', startFrameKey: presigned.body.s3_key, webhook_url: receiver.url },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const done = await waitForGeneration(api, key, created.body.generations[0].generation_id);
    expect(done.body.status, JSON.stringify(done.body)).toBe('completed');
    await until(() => receiver.requests.some((r) => r.answered === 200), 'the webhook delivery');
    let after = await scrape(`${workerListener}/metrics`);
    for (let i = 0; i < 100 && moved(before, after, 'keyframe_webhook_attempts_total', { outcome: 'delivered' }) === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      after = await scrape(`${workerListener}/metrics`);
    }

    expect(moved(before, after, 'keyframe_generations_settled_total', { status: 'completed', model: 'keyframe-local' })).toBe(1);
    expect(moved(before, after, 'keyframe_generation_duration_seconds_count', { status: 'completed', model: 'keyframe-local' })).toBe(1);
    expect(moved(before, after, 'keyframe_webhook_attempts_total', { outcome: 'delivered' })).toBe(1);
    expect(after.value('keyframe_queue_depth', { state: 'queued' })).toBe(0);
    // The worker serves no API: it counted no request and no upload.
    expect(after.sum('http_requests_total')).toBe(0);
    expect(after.sum('keyframe_presigns_total')).toBe(0);

    const apiAfter = await scrape(`${apiNode.url}/metrics`, { authorization: `Bearer ${TOKEN}` });
    expect(moved(apiBefore, apiAfter, 'keyframe_presigns_total', { family: 'image', via: 'presign' })).toBe(1);
    expect(moved(apiBefore, apiAfter, 'keyframe_uploads_settled_total', { state: 'verified', family: 'image' })).toBe(1);
    expect(apiAfter.sum('keyframe_generations_settled_total')).toBe(0);
  });

  it('closes the listener with the role', async () => {
    await workerNode.close();
    await expect(fetch(`${workerListener}/metrics`)).rejects.toThrow();
  });
});
