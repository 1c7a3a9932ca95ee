import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForGeneration } from '../helpers/generations.js';
import { presignAndPut, readFixture } from '../helpers/media-fixtures.js';
import { removeBucket, rgwForTests, s3ServerEnv, uniqueBucketName } from '../helpers/rgw.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { httpModelEntry, LoopbackModelWorker, sendCallback, signCallback, writeModelsFile } from '../helpers/model-worker.js';

/**
 * What the test's model worker does with a job: `complete` really downloads and uploads;
 * `complete-twice` sends its signed callback twice at once; `swap-then-complete` first runs
 * the test's `beforeDownload` (a replay of an upload URL), then works as `complete`.
 */
type Behaviour = 'complete' | 'fail' | 'claim-without-upload' | 'upload-html' | 'never-answer' | 'forge-signature' | 'complete-twice' | 'swap-then-complete';
const BEHAVIOURS: Behaviour[] = ['complete', 'fail', 'claim-without-upload', 'upload-html', 'never-answer', 'forge-signature', 'complete-twice', 'swap-then-complete'];

interface WorkerJob {
  id: string;
  modelName: string;
  prompt: string;
  references: { field: string; url: string; contentType: string }[];
  output: { uploadUrl: string; contentType: string };
  callbackUrl: string;
  callbackSecret: string;
}

/**
 * A real model worker on loopback, as an operator would run one: it accepts
 * the job with 202, then downloads the references, PUTs a video to the
 * presigned URL and calls back with a signed body.
 */
class ModelWorker extends LoopbackModelWorker<WorkerJob> {
  readonly jobs: WorkerJob[] = [];
  readonly downloads: Buffer[] = [];
  /** Per job: each reference as downloaded, with the answer's type and disposition. */
  readonly downloadsOf = new Map<string, { bytes: Buffer; contentType: string | null; disposition: string | null }[]>();
  readonly callbackAnswers: number[] = [];
  /** Per job: the answers to its callbacks, and the last signed callback sent (to replay). */
  readonly callbackAnswersOf = new Map<string, number[]>();
  readonly signedCallbackOf = new Map<string, { payload: string; signature: string }>();
  /** Run by `swap-then-complete` before it downloads anything. */
  beforeDownload: ((job: WorkerJob) => Promise<void>) | null = null;

  protected onJob(job: WorkerJob, path: string): void {
    this.jobs.push(job);
    void this.work(path.slice(1) as Behaviour, job);
  }

  private async work(behaviour: Behaviour, job: WorkerJob): Promise<void> {
    if (behaviour === 'never-answer') return;
    if (behaviour === 'swap-then-complete') await this.beforeDownload?.(job);
    const downloaded: { bytes: Buffer; contentType: string | null; disposition: string | null }[] = [];
    this.downloadsOf.set(job.id, downloaded);
    for (const ref of job.references) {
      const res = await fetch(ref.url);
      const bytes = Buffer.from(await res.arrayBuffer());
      this.downloads.push(bytes);
      downloaded.push({ bytes, contentType: res.headers.get('content-type'), disposition: res.headers.get('content-disposition') });
    }
    if (behaviour === 'complete' || behaviour === 'upload-html' || behaviour === 'complete-twice' || behaviour === 'swap-then-complete') {
      const bytes = behaviour === 'upload-html' ? readFixture('page.html') : readFixture('sample.mp4');
      const put = await fetch(job.output.uploadUrl, { method: 'PUT', headers: { 'content-type': job.output.contentType }, body: new Uint8Array(bytes) });
      if (put.status !== 200) throw new Error(`result upload refused: ${put.status}`);
    }
    const outcome = behaviour === 'fail' ? { status: 'failed', error: 'the model ran out of GPU memory' } : { status: 'completed' };
    const signed = signCallback(behaviour === 'forge-signature' ? { ...job, callbackSecret: 'not-the-job-secret' } : job, outcome);
    this.signedCallbackOf.set(job.id, signed);
    const call = () => sendCallback(job, signed);
    const answers = behaviour === 'complete-twice' ? await Promise.all([call(), call()]) : [await call()];
    this.callbackAnswers.push(...answers);
    this.callbackAnswersOf.set(job.id, answers);
  }
}

const worker = new ModelWorker();
let server: TestServer;
let key: string;
let scratch: string;

async function startWithWorkerModels(extraEnv: Record<string, string> = {}): Promise<TestServer> {
  const workerUrl = await worker.start();
  const file = await writeModelsFile(scratch, Object.fromEntries(BEHAVIOURS.map((b) => [`worker-${b}`, httpModelEntry(`${workerUrl}/${b}`)])));
  return startTestServer({ KEYFRAME_MODELS_FILE: file, KEYFRAME_GENERATION_CONCURRENCY: '4', ...extraEnv });
}

beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), 'keyframe-worker-test-'));
  server = await startWithWorkerModels();
  key = (await server.createKey('dana')).key;
});

afterAll(async () => {
  await server?.stop();
  await worker.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

async function generate(behaviour: Behaviour, target: TestServer = server, apiKey = key, upload?: { s3_key: string }): Promise<{ id: string; final: any }> {
  const png = upload ?? (await presignAndPut(target, apiKey, 'image/png', readFixture('sample.png')));
  const created = await target.api('POST', '/api/generations', { key: apiKey, body: { prompt: `job ${behaviour}`, modelName: `worker-${behaviour}`, startFrameKey: png.s3_key } });
  expect(created.status).toBe(200);
  const id = created.body.generations[0].generation_id as string;
  return { id, final: (await waitForGeneration(target.api, apiKey, id)).body };
}

describe('http runner with a real model worker', () => {
  it('sends the job with presigned URLs and serves the video the worker uploaded', async () => {
    const { id, final } = await generate('complete');
    expect(final.status).toBe('completed');
    const job = worker.jobs.find((j) => j.id === id)!;
    expect(job).toMatchObject({ modelName: 'worker-complete', prompt: 'job complete', output: { contentType: 'video/mp4' } });
    expect(job.references).toEqual([{ field: 'startFrameKey', url: expect.stringContaining('X-Amz-Signature='), contentType: 'image/png' }]);
    expect(worker.downloads.some((d) => d.equals(readFixture('sample.png')))).toBe(true);
    const video = await fetch(final.video_url);
    expect(Buffer.from(await video.arrayBuffer()).equals(readFixture('sample.mp4'))).toBe(true);
  });

  it("records the worker's failure reason", async () => {
    const { final } = await generate('fail');
    expect(final).toMatchObject({ status: 'failed', error: 'Generation failed: the model ran out of GPU memory', video_url: null, completed_at: null });
  });

  it('fails a job whose worker claims completion without uploading a video', async () => {
    const { final } = await generate('claim-without-upload');
    expect(final).toMatchObject({ status: 'failed', error: 'Generation failed: the model worker reported completion but uploaded no video' });
  });

  it('fails a job whose worker uploaded something that is not an MP4', async () => {
    const { final } = await generate('upload-html');
    expect(final).toMatchObject({ status: 'failed', error: 'Generation failed: the model worker uploaded something that is not an MP4 video' });
  });

  it('refuses a callback signed with another secret', async () => {
    const before = worker.callbackAnswers.length;
    const png = await presignAndPut(server, key, 'image/png', readFixture('sample.png'));
    const created = await server.api('POST', '/api/generations', { key, body: { prompt: 'forged', modelName: 'worker-forge-signature', startFrameKey: png.s3_key } });
    const id = created.body.generations[0].generation_id;
    for (let i = 0; i < 100 && worker.callbackAnswers.length === before; i++) await new Promise((r) => setTimeout(r, 50));
    expect(worker.callbackAnswers.slice(before)).toEqual([401]);
    // Still waiting for a genuine callback: no video_url, no completed_at, no error yet.
    expect((await server.api('GET', `/api/generations/${id}`, { key })).body).toEqual({
      id,
      status: 'generating',
      template_id: null,
      video_url: null,
      share_url: null,
      created_at: expect.any(String),
      completed_at: null,
      error: null,
    });
  });

  it('answers 404 to a callback for a job nobody waits for', async () => {
    const payload = JSON.stringify({ status: 'completed' });
    const res = await fetch(`${server.url}/api/generations/gen_AAAAAAAAAAAAAAAAAAAAAA/callback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-keyframe-signature': 'sha256=00' },
      body: payload,
    });
    expect(res.status).toBe(404);
    expect((await res.json()).error).toBe('not_found');
  });
});

describe('time limit', () => {
  it('fails a job that runs past KEYFRAME_GENERATION_TIMEOUT_SECONDS with "Generation timed out"', async () => {
    const limited = await startWithWorkerModels({ KEYFRAME_GENERATION_TIMEOUT_SECONDS: '1' });
    try {
      const apiKey = (await limited.createKey('erin')).key;
      const { final } = await generate('never-answer', limited, apiKey);
      expect(final).toMatchObject({ status: 'failed', error: 'Generation timed out', video_url: null, completed_at: null });
    } finally {
      await limited.stop();
    }
  });
});

/** The object key a presigned URL of `target`'s store points at (path-style: /<bucket>/<key>). */
const keyOfUrl = (url: string) => new URL(url).pathname.split('/').slice(2).map(decodeURIComponent).join('/');

const rgw = await rgwForTests('http runner');
const stores = [
  { name: 'disk store', env: (): Record<string, string> => ({}), skip: false },
  { name: 'Ceph RGW', env: (bucket: string) => s3ServerEnv(rgw, bucket), skip: rgw.skip },
] as const;

for (const storage of stores) {
  describe.skipIf(storage.skip)(`http runner: nothing a worker is handed can be swapped or replayed (${storage.name})`, () => {
    let target: TestServer;
    let bucket: string;
    let apiKey: string;

    beforeAll(async () => {
      bucket = uniqueBucketName('httprunner');
      target = await startWithWorkerModels(storage.env(bucket));
      apiKey = (await target.createKey('frank')).key;
    });
    afterAll(async () => {
      await target?.stop();
      if (storage.name === 'Ceph RGW') await removeBucket(rgw, bucket).catch(() => {});
    });

    it('a replay of the output PUT URL after completion does not change the completed video (item 7)', async () => {
      const { id, final } = await generate('complete', target, apiKey);
      expect(final.status).toBe('completed');
      const job = worker.jobs.find((j) => j.id === id)!;
      const replay = await fetch(job.output.uploadUrl, { method: 'PUT', headers: { 'content-type': 'video/mp4' }, body: new Uint8Array(readFixture('page.html')) });
      await replay.arrayBuffer();
      // S3 takes the replay (into the staging key, which nothing serves); the disk store refuses a key written once.
      if (storage.name === 'disk store') expect(replay.status).toBe(403);

      const again = await target.api('GET', `/api/generations/${id}`, { key: apiKey });
      for (const url of [final.video_url, again.body.video_url]) {
        const video = await fetch(url);
        expect(video.status).toBe(200);
        expect(video.headers.get('content-type')).toBe('video/mp4');
        expect(Buffer.from(await video.arrayBuffer()).equals(readFixture('sample.mp4'))).toBe(true);
      }
      expect(new URL(again.body.video_url).searchParams.get('response-content-type') ?? 'video/mp4').toBe('video/mp4');

      // The worker wrote a staging key of this run only; the references' copies are gone with the run.
      expect(keyOfUrl(job.output.uploadUrl)).toMatch(new RegExp(`^users/frank/generations/${id}/run-[A-Za-z0-9_-]+/output\\.mp4$`));
      for (const ref of job.references) {
        expect(keyOfUrl(ref.url)).toMatch(new RegExp(`^users/frank/generations/${id}/run-[A-Za-z0-9_-]+/ref-0\\.png$`));
        expect(await target.store.head(keyOfUrl(ref.url))).toBeNull();
      }
    });

    it('the callback secret is single-use: a second callback, at once or later, gets the unknown-job answer', async () => {
      const { id, final } = await generate('complete-twice', target, apiKey);
      expect(final.status).toBe('completed');
      expect([...worker.callbackAnswersOf.get(id)!].sort()).toEqual([204, 404]);
      const job = worker.jobs.find((j) => j.id === id)!;
      const { payload, signature } = worker.signedCallbackOf.get(id)!;
      const replay = await fetch(job.callbackUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'x-keyframe-signature': signature }, body: payload });
      expect(replay.status).toBe(404);
      expect((await replay.json()).error).toBe('not_found');
      expect((await target.api('GET', `/api/generations/${id}`, { key: apiKey })).body.status).toBe('completed');
    });

    it('swap (finding 4a): a second PUT of a reference upload URL after the job was handed out never reaches the worker', async () => {
      const png = await presignAndPut(target, apiKey, 'image/png', readFixture('sample.png'));
      const other = readFixture('truncated.png');
      let replay = 0;
      worker.beforeDownload = async () => {
        const res = await fetch(png.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: new Uint8Array(other) });
        await res.arrayBuffer();
        replay = res.status;
      };
      try {
        const { id, final } = await generate('swap-then-complete', target, apiKey, png);
        expect(final.status).toBe('completed');
        if (storage.name === 'Ceph RGW') expect(replay).toBe(200);
        else expect([403, 409]).toContain(replay);
        // What the worker read is the verified bytes, served as the verified type, never the replayed ones.
        expect(worker.downloadsOf.get(id)).toEqual([{ bytes: readFixture('sample.png'), contentType: 'image/png', disposition: expect.stringMatching(/^inline/) }]);
      } finally {
        worker.beforeDownload = null;
      }
    });
  });
}
