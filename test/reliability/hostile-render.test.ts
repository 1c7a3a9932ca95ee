import { createHmac } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { GenerationJob, JobReference } from '../../src/domain/generations/job.js';
import { RunnerFailure } from '../../src/domain/generations/runner.js';
import { LocalRunner } from '../../src/runners/local/local-runner.js';
import { garbagePng, hugePng, id3HlsPlaylist, makeLoudTone, maxVolumeDb, runnerJob, storeReference, waitForGeneration } from '../helpers/generations.js';
import { presignAndPut, readFixture } from '../helpers/media-fixtures.js';
import { removeBucket, rgwForTests, s3ServerEnv, uniqueBucketName } from '../helpers/rgw.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { filesUnder } from './support/checks.js';

/**
 * Hostile references at render time, against a real server: each class is
 * sent the way a client would (through presign, PUT and Create Generation,
 * where verification may already refuse it) and, where verification would
 * stop it, forced straight into the store and through the local runner (a
 * test seam), so the runner's own defences are shown too. Every outcome is
 * bounded: a refusal, a failure with a reason, or a harmless video, each
 * within the test's time limit (far below the 600 s job limit).
 */
const RENDER_ERROR = 'Generation failed: the references could not be rendered';
const REPLACED = (field: string) => `${field}: the upload was replaced or removed after it was verified`;

let server: TestServer;
let alice: string;
let scratch: string;
let bobTone: JobReference;
const controllers: AbortController[] = [];

beforeAll(async () => {
  server = await startTestServer();
  alice = (await server.createKey('alice')).key;
  await server.createKey('bob');
  scratch = await mkdtemp(path.join(tmpdir(), 'keyframe-hostile-render-'));
  bobTone = await storeReference(server.store, 'bob', 'audioKey', 'audio/mpeg', await makeLoudTone(path.join(scratch, 'tone.mp3')));
});
afterEach(() => {
  for (const c of controllers.splice(0)) c.abort(new Error('test over'));
});
afterAll(async () => {
  await server?.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** Through the API: refused at Create Generation (400), or the generation's final status. */
async function throughApi(contentType: string, bytes: Buffer, field: string, extra: Record<string, unknown> = {}): Promise<{ refused: string } | { final: any }> {
  const upload = await presignAndPut(server, alice, contentType, bytes);
  const created = await server.api('POST', '/api/generations', {
    key: alice,
    body: { prompt: 'hostile', modelName: 'keyframe-local', resolution: '480p', duration: '2s', [field]: upload.s3_key, ...extra },
  });
  if (created.status === 400) return { refused: created.body.message as string };
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  return { final: (await waitForGeneration(server.api, alice, created.body.generations[0].generation_id, 90_000)).body };
}

/** Through the local runner directly, on the server's own store and scratch directory. */
async function throughRunner(job: GenerationJob): Promise<{ file: string } | { failed: string }> {
  const controller = new AbortController();
  controllers.push(controller);
  const runner = new LocalRunner({ store: server.store, workDir: path.join(server.dataDir, 'tmp', 'generations'), log: () => {} });
  try {
    const video = await runner.run(job, controller.signal);
    const file = path.join(scratch, `${job.id}.mp4`);
    await writeFile(file, (await server.store.getRange(video.key, 0, 200 * 1024 * 1024))!);
    return { file };
  } catch (err) {
    if (err instanceof RunnerFailure) return { failed: err.message };
    throw err;
  }
}

async function expectNoTone(file: string): Promise<void> {
  const loudest = await maxVolumeDb(file);
  expect(loudest === null || loudest < -50, `max_volume ${loudest} dB: another file was rendered`).toBe(true);
}

describe('ID3 tag + HLS playlist "MP3" naming another user\'s object (finding 1)', () => {
  const targets = {
    absolute: () => path.join(server.dataDir, 'objects', bobTone.key),
    relative: () => `../../../objects/${bobTone.key}`,
  };
  for (const [name, target] of Object.entries(targets)) {
    it(`${name} path, through the API: refused, failed, or silent; never the other user's tone`, async () => {
      const outcome = await throughApi('audio/mpeg', id3HlsPlaylist(target()), 'audioKey');
      if ('refused' in outcome) return expect(outcome.refused).toMatch(/^audioKey: /);
      if (outcome.final.status === 'failed') return expect(outcome.final.error).toEqual(expect.any(String));
      const file = path.join(scratch, `${name}-api.mp4`);
      await writeFile(file, Buffer.from(await (await fetch(outcome.final.video_url)).arrayBuffer()));
      await expectNoTone(file);
    }, 120_000);

    it(`${name} path, forced through the runner: it fails with the render error`, async () => {
      const hostile = await storeReference(server.store, 'alice', 'audioKey', 'audio/mpeg', id3HlsPlaylist(target()));
      const outcome = await throughRunner(runnerJob('alice', [hostile], { durationSeconds: 2, duration: '2s' }));
      if ('file' in outcome) await expectNoTone(outcome.file);
      else expect(outcome.failed).toBe(RENDER_ERROR);
    }, 60_000);
  }
});

describe('one user cannot stall the render slot (finding 2)', () => {
  it('garbage-data PNG through the API: refused, or failed with the render error, within the bound', async () => {
    const outcome = await throughApi('image/png', garbagePng(), 'startFrameKey');
    if ('refused' in outcome) expect(outcome.refused).toMatch(/^startFrameKey: /);
    else expect(outcome.final).toMatchObject({ status: 'failed', error: RENDER_ERROR });
  }, 120_000);

  it('garbage-data PNG forced through the runner: fails with the render error in seconds', async () => {
    const png = await storeReference(server.store, 'alice', 'startFrameKey', 'image/png', garbagePng());
    expect(await throughRunner(runnerJob('alice', [png]))).toEqual({ failed: RENDER_ERROR });
  }, 60_000);

  it('8000x8000 PNG forced through the runner: a video or the render error, within the limits', async () => {
    const png = await storeReference(server.store, 'alice', 'startFrameKey', 'image/png', await hugePng(8000, 8000));
    const outcome = await throughRunner(runnerJob('alice', [png]));
    if ('failed' in outcome) expect(outcome.failed).toBe(RENDER_ERROR);
  }, 90_000);
});

describe('reference swap (finding 4a)', () => {
  const rgwSettings = rgwForTests('hostile render swap');

  it('disk store: a second PUT of a verified reference URL is refused, or the job fails "replaced"; never rendered', async () => {
    const png = await presignAndPut(server, alice, 'image/png', readFixture('sample.png'));
    const status = await server.api('GET', `/api/uploads/status?key=${encodeURIComponent(png.s3_key)}`, { key: alice });
    expect(status.body.state).toBe('verified');
    const replay = await fetch(png.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: new Uint8Array(readFixture('truncated.png')) });
    await replay.arrayBuffer();
    const created = await server.api('POST', '/api/generations', { key: alice, body: { prompt: 'swap', modelName: 'keyframe-local', resolution: '480p', duration: '1s', startFrameKey: png.s3_key } });
    expect(created.status).toBe(200);
    const final = (await waitForGeneration(server.api, alice, created.body.generations[0].generation_id, 90_000)).body;
    if (replay.status === 200) expect(final).toMatchObject({ status: 'failed', error: REPLACED('startFrameKey') });
    else expect(final).toMatchObject({ status: 'completed' });
  }, 120_000);

  it('Ceph RGW: a replayed PUT after verification fails the job "replaced"', async (ctx) => {
    const rgw = await rgwSettings;
    if (rgw.skip) return ctx.skip();
    const bucket = uniqueBucketName('hostilerender');
    const s3 = await startTestServer(s3ServerEnv(rgw, bucket));
    try {
      const key = (await s3.createKey('alice')).key;
      const png = await presignAndPut(s3, key, 'image/png', readFixture('sample.png'));
      expect((await s3.api('GET', `/api/uploads/status?key=${encodeURIComponent(png.s3_key)}`, { key })).body.state).toBe('verified');
      // One render slot: a long render keeps the victim queued until after the replay.
      const busy = await s3.api('POST', '/api/generations', { key, body: { prompt: 'busy', modelName: 'keyframe-local', resolution: '1080p', duration: '12s' } });
      const created = await s3.api('POST', '/api/generations', { key, body: { prompt: 'swap', modelName: 'keyframe-local', resolution: '480p', duration: '1s', startFrameKey: png.s3_key } });
      expect([busy.status, created.status]).toEqual([200, 200]);
      const replay = await fetch(png.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: new Uint8Array(readFixture('truncated.png')) });
      await replay.arrayBuffer();
      expect(replay.status).toBe(200);
      const final = (await waitForGeneration(s3.api, key, created.body.generations[0].generation_id, 90_000)).body;
      expect(final).toMatchObject({ status: 'failed', error: REPLACED('startFrameKey') });
    } finally {
      await s3.stop();
      await removeBucket(rgw, bucket).catch(() => {});
    }
  }, 120_000);
});

/** One request on its own connection (closed after it), so no kept-alive socket outlives the test's server. */
function send(method: string, url: string, headers: Record<string, string>, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: { ...headers, 'content-length': String(body.length), connection: 'close' }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('http runner output URL and callback are single-use (finding 6/item 7)', () => {
  it('a worker that replays its output PUT (HTML) and its callback after completion changes nothing', async () => {
    const replays: { put: number; callback: number }[] = [];
    const workerServer = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        res.writeHead(202).end();
        const job = JSON.parse(body) as { output: { uploadUrl: string }; callbackUrl: string; callbackSecret: string };
        void (async () => {
          const put = (bytes: Buffer) => send('PUT', job.output.uploadUrl, { 'content-type': 'video/mp4' }, bytes);
          const payload = JSON.stringify({ status: 'completed' });
          const signature = `sha256=${createHmac('sha256', job.callbackSecret).update(payload).digest('hex')}`;
          const callback = () => send('POST', job.callbackUrl, { 'content-type': 'application/json', 'x-keyframe-signature': signature }, Buffer.from(payload));
          expect(await put(readFixture('sample.mp4'))).toBe(200);
          expect(await callback()).toBe(204);
          // The hostile part: both replayed at once, after the accepted callback.
          const [replayedPut, replayedCallback] = await Promise.all([put(readFixture('page.html')), callback()]);
          replays.push({ put: replayedPut, callback: replayedCallback });
        })();
      });
    });
    await new Promise<void>((resolve) => workerServer.listen(0, '127.0.0.1', resolve));
    const models = path.join(scratch, 'models.json');
    const model = {
      runner: { type: 'http', url: `http://127.0.0.1:${(workerServer.address() as AddressInfo).port}/jobs` },
      referenceFields: [], maxIngredientImages: 0, durations: ['4s'], resolutions: ['480p'], aspectRatios: ['16:9'], audio: false,
      defaults: { duration: '4s', resolution: '480p', aspectRatio: '16:9', hasAudio: false }, latencyEstimateSec: { typical: 1, busy: 2 },
    };
    await writeFile(models, JSON.stringify({ models: { replayer: model } }));
    const target = await startTestServer({ KEYFRAME_MODELS_FILE: models });
    try {
      const key = (await target.createKey('carol')).key;
      const created = await target.api('POST', '/api/generations', { key, body: { prompt: 'replay', modelName: 'replayer' } });
      expect(created.status).toBe(200);
      const id = created.body.generations[0].generation_id;
      expect((await waitForGeneration(target.api, key, id, 60_000)).body.status).toBe('completed');
      for (let i = 0; i < 100 && replays.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(replays).toHaveLength(1);
      expect(replays[0]!.callback).toBe(404);
      const again = (await target.api('GET', `/api/generations/${id}`, { key })).body;
      const video = Buffer.from(await (await fetch(again.video_url)).arrayBuffer());
      expect(video.equals(readFixture('sample.mp4')), 'the completed video still is the MP4 the worker first uploaded').toBe(true);
    } finally {
      // Kept-alive client sockets would hold the server's close for its keep-alive timeout (72 s).
      target.app.server.closeAllConnections();
      await target.stop();
      workerServer.closeAllConnections();
      await new Promise((resolve) => workerServer.close(resolve));
    }
  }, 90_000);
});

describe('after every class', () => {
  it('leaves no scratch file behind', async () => {
    expect(await filesUnder(path.join(server.dataDir, 'tmp', 'generations'))).toEqual([]);
  });
});
