import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { ApiKeys } from '../../src/domain/api-keys.js';
import { freePort } from '../../src/free-port.js';
import { startApi, type RunningServer } from '../../src/start/api.js';
import { startWorker, type RunningWorker } from '../../src/start/worker.js';
import { testDatabase, type TestDatabase } from '../helpers/database.js';
import { probe, waitForGeneration } from '../helpers/generations.js';
import { readFixture } from '../helpers/media-fixtures.js';
import { assertRgwReachable, removeBucket, rgwForTests, s3ServerEnv, uniqueBucketName } from '../helpers/rgw.js';
import { httpModelEntry, LoopbackModelWorker, sendCallback, signCallback, writeModelsFile } from '../helpers/model-worker.js';
import { callApi } from '../helpers/server.js';

// The http runner split across roles: an `api` node and a separate `worker` node (two composition
// roots in this process, on RGW and one database, sharing no memory). The worker runs the job; the
// model worker's callback reaches the api node, which settles it in the database for the worker.

const rgw = await rgwForTests('http runner across roles');

interface WorkerJob {
  id: string;
  references: { url: string }[];
  output: { uploadUrl: string; contentType: string };
  callbackUrl: string;
  callbackSecret: string;
}

/** A model worker on loopback: 202, then it downloads the references, uploads the MP4 fixture and calls back. */
class ModelWorker extends LoopbackModelWorker<WorkerJob> {
  readonly jobs = new Map<string, WorkerJob>();
  /** Per job: the answer to its callback and the signed callback itself (to replay). */
  readonly callbacks = new Map<string, { status: number; payload: string; signature: string }>();

  protected onJob(job: WorkerJob, path: string): void {
    this.jobs.set(job.id, job);
    void this.work(path === '/fail' ? 'fail' : 'complete', job);
  }

  private async work(behaviour: 'complete' | 'fail', job: WorkerJob): Promise<void> {
    for (const ref of job.references) await (await fetch(ref.url)).arrayBuffer();
    if (behaviour === 'complete') {
      const put = await fetch(job.output.uploadUrl, { method: 'PUT', headers: { 'content-type': job.output.contentType }, body: new Uint8Array(readFixture('sample.mp4')) });
      if (put.status !== 200) throw new Error(`result upload refused: ${put.status}`);
    }
    const signed = signCallback(job, behaviour === 'fail' ? { status: 'failed', error: 'out of GPU memory' } : { status: 'completed' });
    this.callbacks.set(job.id, { status: await sendCallback(job, signed), ...signed });
  }
}

describe.skipIf(rgw.skip)('http runner across roles: the callback reaches the api node, the worker node completes the job', () => {
  const modelWorker = new ModelWorker();
  let database: TestDatabase;
  let scratch: string;
  let bucket: string;
  let apiNode: RunningServer;
  let workerNode: RunningWorker;
  let key: string;

  const api = (method: string, pathname: string, options: { key?: string; body?: unknown } = {}) =>
    callApi(apiNode.url, method, pathname, { key, ...options });

  /** Uploads the PNG fixture through the api node and creates a generation of `model` on it; its final status body. */
  async function generate(model: string): Promise<{ id: string; final: any }> {
    const presigned = await api('POST', '/api/s3/presign-upload', { body: { kind: 'upload', contentType: 'image/png' } });
    expect(presigned.status).toBe(200);
    const put = await fetch(presigned.body.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: new Uint8Array(readFixture('sample.png')) });
    expect(put.status).toBe(200);
    const created = await api('POST', '/api/generations', { body: { prompt: 'across roles', modelName: model, startFrameKey: presigned.body.s3_key } });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const id = created.body.generations[0].generation_id as string;
    return { id, final: (await waitForGeneration(api, key, id)).body };
  }

  beforeAll(async () => {
    assertRgwReachable(rgw);
    database = await testDatabase('roles-callbacks');
    scratch = await mkdtemp(path.join(tmpdir(), 'keyframe-roles-callbacks-'));
    bucket = uniqueBucketName('rolescb');
    const workerUrl = await modelWorker.start();
    const modelsFile = await writeModelsFile(scratch, { 'worker-complete': httpModelEntry(`${workerUrl}/complete`), 'worker-fail': httpModelEntry(`${workerUrl}/fail`) });
    const port = await freePort('127.0.0.1');
    const postgres = database.dialect === 'postgres';
    const shared = {
      HOST: '127.0.0.1',
      LOG_LEVEL: 'silent',
      ...database.env,
      ...s3ServerEnv(rgw, bucket),
      KEYFRAME_MODELS_FILE: modelsFile,
      // The worker hands model workers the api node's URL.
      KEYFRAME_PUBLIC_URL: `http://127.0.0.1:${port}`,
      // On PostgreSQL the nodes share nothing but the database and the configured secret (each its own
      // data dir); on SQLite the data dir is the database, and the secret kept in it is shared with it.
      ...(postgres ? { KEYFRAME_SIGNING_SECRET: 'roles-callbacks-test-signing-secret-0123456789' } : {}),
    };
    apiNode = await startApi(loadConfig({ ...shared, KEYFRAME_ROLE: 'api', PORT: String(port) }));
    workerNode = await startWorker(
      loadConfig({ ...shared, KEYFRAME_ROLE: 'worker', PORT: '0', ...(postgres ? { KEYFRAME_DATA_DIR: path.join(scratch, 'worker-data') } : {}) }),
    );
    key = (await new ApiKeys(apiNode.db).createKey({ userId: 'wanda' })).key;
  });

  afterAll(async () => {
    await workerNode?.close();
    await apiNode?.close();
    await modelWorker.stop();
    await database?.dispose();
    if (bucket) await removeBucket(rgw, bucket).catch(() => {});
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it('completes with a playable video; the callback went to the api node, and a replay of it finds no job', async () => {
    const { id, final } = await generate('worker-complete');
    expect(final.status, JSON.stringify(final)).toBe('completed');
    const job = modelWorker.jobs.get(id)!;
    expect(job.callbackUrl).toBe(`${apiNode.url}/api/generations/${id}/callback`);
    expect(modelWorker.callbacks.get(id)?.status).toBe(204);

    const video = await fetch(final.video_url);
    expect(video.status).toBe(200);
    const bytes = Buffer.from(await video.arrayBuffer());
    expect(bytes.equals(readFixture('sample.mp4'))).toBe(true);
    const file = path.join(scratch, `${id}.mp4`);
    await writeFile(file, bytes);
    const probed = await probe(file);
    expect(probed.formatName).toContain('mp4');
    expect(probed.video).toBeDefined();

    const { payload, signature } = modelWorker.callbacks.get(id)!;
    const replay = await fetch(job.callbackUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'x-keyframe-signature': signature }, body: payload });
    expect(replay.status).toBe(404);
    // The run is over: nothing of it is left in the database.
    expect(await apiNode.db.selectFrom('runner_callbacks').selectAll().where('generation_id', '=', id).executeTakeFirst()).toBeUndefined();
  });

  it("records the model worker's failure reason, reported to the api node", async () => {
    const { id, final } = await generate('worker-fail');
    expect(final).toMatchObject({ status: 'failed', error: 'Generation failed: out of GPU memory', video_url: null });
    expect(modelWorker.callbacks.get(id)?.status).toBe(204);
  });
});
