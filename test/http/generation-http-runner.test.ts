import { createHmac } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitForGeneration } from '../helpers/generations.js';
import { presignAndPut, readFixture } from '../helpers/media-fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

/** What the test's model worker does with a job: `complete` really downloads and uploads. */
type Behaviour = 'complete' | 'fail' | 'claim-without-upload' | 'upload-html' | 'never-answer' | 'forge-signature';

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
class ModelWorker {
  readonly jobs: WorkerJob[] = [];
  readonly downloads: Buffer[] = [];
  readonly callbackAnswers: number[] = [];
  private readonly server = http.createServer((req, res) => this.handle(req, res));

  /** Listens (once) and returns the worker's base URL. */
  async start(): Promise<string> {
    if (!this.server.listening) await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const behaviour = req.url!.slice(1) as Behaviour;
      const job = JSON.parse(body) as WorkerJob;
      this.jobs.push(job);
      res.writeHead(202).end();
      void this.work(behaviour, job);
    });
  }

  private async work(behaviour: Behaviour, job: WorkerJob): Promise<void> {
    if (behaviour === 'never-answer') return;
    for (const ref of job.references) {
      const res = await fetch(ref.url);
      this.downloads.push(Buffer.from(await res.arrayBuffer()));
    }
    if (behaviour === 'complete' || behaviour === 'upload-html') {
      const bytes = behaviour === 'complete' ? readFixture('sample.mp4') : readFixture('page.html');
      const put = await fetch(job.output.uploadUrl, { method: 'PUT', headers: { 'content-type': job.output.contentType }, body: new Uint8Array(bytes) });
      if (put.status !== 200) throw new Error(`result upload refused: ${put.status}`);
    }
    const payload = JSON.stringify(behaviour === 'fail' ? { status: 'failed', error: 'the model ran out of GPU memory' } : { status: 'completed' });
    const secret = behaviour === 'forge-signature' ? 'not-the-job-secret' : job.callbackSecret;
    const signature = `sha256=${createHmac('sha256', secret).update(payload).digest('hex')}`;
    const answer = await fetch(job.callbackUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'x-keyframe-signature': signature }, body: payload });
    this.callbackAnswers.push(answer.status);
  }
}

const worker = new ModelWorker();
let server: TestServer;
let key: string;
let scratch: string;

function httpModel(workerUrl: string, behaviour: Behaviour) {
  return {
    runner: { type: 'http', url: `${workerUrl}/${behaviour}` },
    referenceFields: ['startFrameKey'],
    maxIngredientImages: 0,
    durations: ['4s'],
    resolutions: ['480p'],
    aspectRatios: ['16:9'],
    audio: false,
    defaults: { duration: '4s', resolution: '480p', aspectRatio: '16:9', hasAudio: false },
    latencyEstimateSec: { typical: 1, busy: 2 },
  };
}

async function startWithWorkerModels(extraEnv: Record<string, string> = {}): Promise<TestServer> {
  const workerUrl = await worker.start();
  const behaviours: Behaviour[] = ['complete', 'fail', 'claim-without-upload', 'upload-html', 'never-answer', 'forge-signature'];
  const models = Object.fromEntries(behaviours.map((b) => [`worker-${b}`, httpModel(workerUrl, b)]));
  const file = path.join(scratch, `models-${Object.keys(extraEnv).length}.json`);
  await writeFile(file, JSON.stringify({ models }));
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

async function generate(behaviour: Behaviour, target: TestServer = server, apiKey = key): Promise<{ id: string; final: any }> {
  const png = await presignAndPut(target, apiKey, 'image/png', readFixture('sample.png'));
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
