import { createHmac } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probe, waitForGeneration } from '../helpers/generations.js';
import { presignAndPut, readFixture } from '../helpers/media-fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

let server: TestServer;
let alice: string;
let bob: string;
let scratch: string;

beforeAll(async () => {
  server = await startTestServer({ KEYFRAME_WEBHOOK_ALLOW_PRIVATE: 'true' });
  alice = (await server.createKey('alice')).key;
  bob = (await server.createKey('bob')).key;
  scratch = await mkdtemp(path.join(tmpdir(), 'keyframe-gen-test-'));
});

afterAll(async () => {
  await server?.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

const create = (key: string, body: Record<string, unknown>) => server.api('POST', '/api/generations', { key, body });

async function download(url: string, name: string): Promise<{ file: string; bytes: Buffer }> {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  const bytes = Buffer.from(await res.arrayBuffer());
  const file = path.join(scratch, name);
  await writeFile(file, bytes);
  return { file, bytes };
}

describe('presign → upload → generate → poll → download', () => {
  it('renders an MP4 of the asked resolution and duration from a start frame and a soundtrack', async () => {
    const png = await presignAndPut(server, alice, 'image/png', readFixture('sample.png'));
    const mp3 = await presignAndPut(server, alice, 'audio/mpeg', readFixture('sample.mp3'));

    const created = await create(alice, {
      prompt: 'a lighthouse at dusk',
      modelName: 'keyframe-local',
      aspectRatio: '16:9',
      resolution: '720p',
      duration: '3s',
      startFrameKey: png.s3_key,
      audioKey: mp3.s3_key,
      templateId: 'tpl_demo',
    });
    expect(created.status).toBe(200);
    expect(created.body).toEqual({
      generations: [{ generation_id: expect.stringMatching(/^gen_[A-Za-z0-9_-]{22}$/), status: 'generating' }],
      credits_charged: 0,
      latency_estimate_sec: { typical: expect.any(Number), busy: expect.any(Number) },
    });
    const id = created.body.generations[0].generation_id as string;

    const done = await waitForGeneration(server.api, alice, id);
    expect(done.status).toBe(200);
    expect(done.body).toEqual({
      id,
      status: 'completed',
      template_id: 'tpl_demo',
      video_url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\//),
      share_url: null,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      completed_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      error: null,
    });
    expect(new URL(done.body.video_url).searchParams.get('X-Amz-Expires')).toBe('3600');

    const { file, bytes } = await download(done.body.video_url, 'acceptance.mp4');
    const video = await probe(file);
    expect(video.formatName).toContain('mp4');
    expect(video.video).toMatchObject({ codec_name: 'h264', width: 1280, height: 720, pix_fmt: 'yuv420p' });
    expect(video.audio).toMatchObject({ codec_name: 'aac' });
    expect(Math.abs(video.duration - 3)).toBeLessThan(0.25);
    // faststart: the index (moov) comes before the media data (mdat).
    expect(bytes.indexOf('moov')).toBeGreaterThan(0);
    expect(bytes.indexOf('moov')).toBeLessThan(bytes.indexOf('mdat'));
  });

  it('renders a portrait colour card with a silent track when asked for audio without references', async () => {
    const created = await create(alice, { prompt: 'nothing but colour', modelName: 'keyframe-local', aspectRatio: '9:16', resolution: '480p', duration: '1s', hasAudio: true });
    expect(created.status).toBe(200);
    const done = await waitForGeneration(server.api, alice, created.body.generations[0].generation_id);
    expect(done.body.status).toBe('completed');
    const video = await probe((await download(done.body.video_url, 'card.mp4')).file);
    expect(video.video).toMatchObject({ codec_name: 'h264', width: 480, height: 854 });
    expect(video.audio).toMatchObject({ codec_name: 'aac' });
  });

  it('uses a source video, ingredient images and an end frame, without audio unless asked', async () => {
    const mp4 = await presignAndPut(server, alice, 'video/mp4', readFixture('sample.mp4'));
    const jpg = await presignAndPut(server, alice, 'image/jpeg', readFixture('sample.jpg'));
    const png = await presignAndPut(server, alice, 'image/png', readFixture('sample.png'));
    const created = await create(alice, {
      prompt: 'a montage',
      modelName: 'keyframe-local',
      aspectRatio: '1:1',
      resolution: '480p',
      duration: '2s',
      sourceVideoKey: mp4.s3_key,
      ingredientImageKeys: [jpg.s3_key, png.s3_key],
      endFrameKey: png.s3_key,
    });
    expect(created.status).toBe(200);
    const done = await waitForGeneration(server.api, alice, created.body.generations[0].generation_id);
    expect(done.body.status).toBe('completed');
    const video = await probe((await download(done.body.video_url, 'montage.mp4')).file);
    expect(video.video).toMatchObject({ codec_name: 'h264', width: 480, height: 480 });
    expect(video.audio).toBeUndefined();
    expect(Math.abs(video.duration - 2)).toBeLessThan(0.25);
  });

  it('queues `count` generations', async () => {
    const created = await create(alice, { prompt: 'two of them', modelName: 'keyframe-local', resolution: '480p', duration: '1s', count: 2 });
    expect(created.status).toBe(200);
    expect(created.body.generations).toHaveLength(2);
    const [a, b] = created.body.generations.map((g: { generation_id: string }) => g.generation_id);
    expect(a).not.toBe(b);
    for (const id of [a, b]) expect((await waitForGeneration(server.api, alice, id)).body.status).toBe('completed');
  });
});

describe('refusals', () => {
  let alicePng: string;
  let bobPng: string;

  beforeAll(async () => {
    alicePng = (await presignAndPut(server, alice, 'image/png', readFixture('sample.png'))).s3_key;
    bobPng = (await presignAndPut(server, bob, 'image/png', readFixture('sample.png'))).s3_key;
  });

  const base = { prompt: 'p', modelName: 'keyframe-local', resolution: '480p', duration: '1s' };

  it("refuses another user's key and a missing key with the same 404", async () => {
    const other = await create(alice, { ...base, startFrameKey: bobPng });
    const missingKey = alicePng.replace(/file_[A-Za-z0-9_-]{22}/, 'file_AAAAAAAAAAAAAAAAAAAAAA');
    const missing = await create(alice, { ...base, startFrameKey: missingKey });
    const garbage = await create(alice, { ...base, startFrameKey: 'not/a/key' });
    for (const res of [other, missing, garbage]) {
      expect(res.status).toBe(404);
      expect(res.body).toEqual({ error: 'not_found', message: 'startFrameKey: no upload found with this key' });
    }
  });

  it('refuses a key that was presigned but never uploaded', async () => {
    const never = await presignAndPut(server, alice, 'image/png', null);
    const res = await create(alice, { ...base, endFrameKey: never.s3_key });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('validation_error');
    expect(res.body.message).toMatch(/^endFrameKey: .*pending/);
  });

  it('refuses an image key in sourceVideoKey, naming the field', async () => {
    const res = await create(alice, { ...base, sourceVideoKey: alicePng });
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'validation_error', message: 'sourceVideoKey must be a video upload, but this key is image (image/png)' });
  });

  it('refuses an audio key among ingredient images', async () => {
    const mp3 = await presignAndPut(server, alice, 'audio/mpeg', readFixture('sample.mp3'));
    const res = await create(alice, { ...base, ingredientImageKeys: [alicePng, mp3.s3_key] });
    expect(res.status).toBe(400);
    expect(res.body.message).toMatch(/^ingredientImageKeys must be an image upload/);
  });

  it('refuses a spoofed upload (HTML declared as image/png) as rejected', async () => {
    const spoof = await presignAndPut(server, alice, 'image/png', readFixture('page.html'));
    const res = await create(alice, { ...base, startFrameKey: spoof.s3_key });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('validation_error');
    expect(res.body.message).toMatch(/^startFrameKey: the upload was rejected: /);
  });

  it('refuses an unknown model, listing the available ones', async () => {
    const res = await create(alice, { ...base, modelName: 'no-such-model' });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('validation_error');
    expect(res.body.message).toMatch(/^Unknown modelName "no-such-model"; available models: .*veo-3\.1.*keyframe-local/);
  });

  it('refuses a field the model does not accept, saying what it accepts', async () => {
    const mp4 = await presignAndPut(server, alice, 'video/mp4', readFixture('sample.mp4'));
    const res = await create(alice, { prompt: 'p', modelName: 'veo-3.1', sourceVideoKey: mp4.s3_key });
    expect(res.status).toBe(400);
    expect(res.body).toEqual({
      error: 'validation_error',
      message: 'sourceVideoKey is not accepted by veo-3.1; it accepts startFrameKey, endFrameKey, ingredientImageKeys',
    });
  });

  it("refuses a duration, resolution, aspect ratio or ingredient count outside the model's", async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ duration: '5s' }, /^duration "5s" is not accepted by veo-3\.1; it accepts 4s, 6s, 8s$/],
      [{ resolution: '480p' }, /^resolution "480p" is not accepted by veo-3\.1; it accepts 720p, 1080p$/],
      [{ aspectRatio: '1:1' }, /^aspectRatio "1:1" is not accepted by veo-3\.1; it accepts 16:9, 9:16$/],
      [{ ingredientImageKeys: [alicePng, alicePng, alicePng, alicePng] }, /^ingredientImageKeys has 4 images; veo-3\.1 accepts at most 3$/],
    ];
    for (const [extra, message] of cases) {
      const res = await create(alice, { prompt: 'p', modelName: 'veo-3.1', ...extra });
      expect(res.status).toBe(400);
      expect(res.body.message).toMatch(message);
    }
    const local = await create(alice, { ...base, duration: '21s' });
    expect(local.body.message).toBe('duration "21s" is not accepted by keyframe-local; it accepts 1s to 20s');
  });

  it('refuses count 0 and 5', async () => {
    for (const count of [0, 5]) {
      const res = await create(alice, { ...base, count });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('validation_error');
      expect(res.body.message).toMatch(/^body\.count must be (>=|<=) [14]/);
    }
  });

  it('refuses malformed bodies with the field named', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ modelName: 'keyframe-local' }, /prompt is required/],
      [{ prompt: '', modelName: 'keyframe-local' }, /^body\.prompt must NOT have fewer than 1 characters$/],
      [{ prompt: '   ', modelName: 'keyframe-local' }, /^prompt must not be empty$/],
      [{ prompt: 'x'.repeat(4001), modelName: 'keyframe-local' }, /^body\.prompt must NOT have more than 4000 characters$/],
      [{ ...base, aspectRatio: '2:1' }, /^aspectRatio must be one of auto, 21:9, 16:9, 4:3, 1:1, 3:4, 9:16$/],
      [{ ...base, duration: '8' }, /^duration must be whole seconds such as "8s"$/],
      [{ ...base, resolution: 'hd' }, /^resolution must be a line count such as "720p"$/],
      [{ ...base, count: 1.5 }, /count/],
      [{ ...base, hasAudio: 'yes' }, /hasAudio/],
      [{ ...base, ingredientImageKeys: Array(9).fill(alicePng) }, /^body\.ingredientImageKeys must NOT have more than 8 items$/],
      [{ ...base, templateId: 7 }, /templateId/],
    ];
    for (const [body, message] of cases) {
      const res = await create(alice, body);
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(res.body.error).toBe('validation_error');
      expect(res.body.message).toMatch(message);
    }
  });

  it('needs a valid API key', async () => {
    const res = await server.api('POST', '/api/generations', { body: base });
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'unauthorized', message: 'Invalid or missing API key' });
  });
});

describe('Get Generation Status', () => {
  it("answers 404 for another user's generation and for an unknown id alike", async () => {
    const created = await create(alice, { prompt: 'mine', modelName: 'keyframe-local', resolution: '480p', duration: '1s' });
    const id = created.body.generations[0].generation_id;
    const asBob = await server.api('GET', `/api/generations/${id}`, { key: bob });
    const unknown = await server.api('GET', '/api/generations/gen_AAAAAAAAAAAAAAAAAAAAAA', { key: alice });
    for (const res of [asBob, unknown]) {
      expect(res.status).toBe(404);
      expect(res.body).toEqual({ error: 'not_found', message: 'Generation not found' });
    }
    expect((await waitForGeneration(server.api, alice, id)).body.status).toBe('completed');
  });
});

describe('webhooks', () => {
  it('POSTs the status body, signed with the user webhook secret, to the webhook_url', async () => {
    const received: { headers: http.IncomingHttpHeaders; body: string }[] = [];
    let attempts = 0;
    const receiver = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        attempts += 1;
        // The first attempt fails, so the retry is exercised too.
        if (attempts === 1) return res.writeHead(503).end();
        received.push({ headers: req.headers, body });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      const webhookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/keyframe`;
      const created = await create(alice, { prompt: 'hook', modelName: 'keyframe-local', resolution: '480p', duration: '1s', webhook_url: webhookUrl });
      expect(created.status).toBe(200);
      const id = created.body.generations[0].generation_id;
      await waitForGeneration(server.api, alice, id);
      for (let i = 0; i < 100 && received.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
      expect(received).toHaveLength(1);
      const [delivery] = received;
      const secret = (await server.apiKeys.listUsers()).find((u) => u.id === 'alice')!.webhook_secret;
      const timestamp = delivery!.headers['x-keyframe-timestamp'] as string;
      const expected = `v1=${createHmac('sha256', secret).update(`${timestamp}.${delivery!.body}`).digest('hex')}`;
      expect(delivery!.headers['x-keyframe-signature']).toBe(expected);
      expect(delivery!.headers['content-type']).toBe('application/json');
      // The id of the delivery's row: what a receiver de-duplicates on.
      expect(delivery!.headers['x-keyframe-delivery']).toMatch(/^whd_/);
      expect(JSON.parse(delivery!.body)).toMatchObject({ id, status: 'completed', video_url: expect.any(String), error: null });
    } finally {
      await new Promise((resolve) => receiver.close(resolve));
    }
  });

  it('refuses loopback, private, link-local and non-http webhook targets by default', async () => {
    const guarded = await startTestServer();
    try {
      const key = (await guarded.createKey('carol')).key;
      for (const url of ['http://127.0.0.1:9/x', 'http://localhost/x', 'http://169.254.169.254/latest', 'http://[::1]/x', 'http://10.1.2.3/', 'ftp://example.com/x', 'not a url']) {
        const res = await guarded.api('POST', '/api/generations', { key, body: { prompt: 'p', modelName: 'keyframe-local', webhook_url: url } });
        expect(res.status, url).toBe(400);
        expect(res.body.error).toBe('validation_error');
        expect(res.body.message).toMatch(/^webhook_url /);
      }
    } finally {
      await guarded.stop();
    }
  });
});
