import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyframeError } from '../../src/client/index.js';
import { KeyframeClient } from '../../src/client/node.js';
import { readFixture } from '../helpers/media-fixtures.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

// The typed client's API calls against a real server: refusals as KeyframeError, a generation
// created and waited for, the model list.

let server: TestServer;
let apiKey: string;

beforeAll(async () => {
  server = await startTestServer();
  apiKey = (await server.createKey('alice')).key;
});

afterAll(async () => {
  await server?.stop();
});

const client = (key = apiKey) => new KeyframeClient({ baseUrl: `${server.url}/`, apiKey: key });

describe('KeyframeError', () => {
  it('a 401 carries the envelope and the status', async () => {
    const err = await client('prism_sk_not_a_real_key').uploadStatus('users/alice/user-uploads/x.png').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyframeError);
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ name: 'KeyframeError', status: 401, error: 'unauthorized', message: expect.stringMatching(/API key/) });
  });

  it('a 404 carries the envelope and the status', async () => {
    const err = await client().getGeneration('gen_doesnotexist0000000000').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyframeError);
    expect(err).toMatchObject({ status: 404, error: 'not_found', message: expect.any(String) });
    const status = await client().uploadStatus('users/alice/user-uploads/batch_x/file_y.png').catch((e: unknown) => e);
    expect(status).toMatchObject({ status: 404, error: 'not_found', message: 'Upload not found' });
  });

  it('no server at all is a network_error with status 0', async () => {
    const nowhere = new KeyframeClient({ baseUrl: 'http://127.0.0.1:9', apiKey });
    const err = await nowhere.listModels().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyframeError);
    expect(err).toMatchObject({ status: 0, error: 'network_error' });
  });
});

describe('generations', () => {
  it('createGeneration + waitForGeneration on an uploaded PNG: completed, with a video_url serving an MP4', async () => {
    const ref = await client().uploadReference(readFixture('sample.png'), { fileName: 'frame.png' });
    expect(ref.status.state).toBe('verified');
    const created = await client().createGeneration({ prompt: 'a slow pan', modelName: 'keyframe-local', startFrameKey: ref.s3_key, duration: '1s', resolution: '480p' });
    expect(created.generations).toHaveLength(1);
    const id = created.generations[0]!.generation_id;
    const seen: string[] = [];
    const done = await client().waitForGeneration(id, { timeoutMs: 120_000, onStatus: (s) => seen.push(s.status) });
    expect(done).toMatchObject({ id, status: 'completed', video_url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\//), error: null });
    expect(seen.at(-1)).toBe('completed');
    const video = await fetch(done.video_url!);
    expect(video.status).toBe(200);
    expect(video.headers.get('content-type')).toBe('video/mp4');
    const bytes = new Uint8Array(await video.arrayBuffer());
    expect(new TextDecoder().decode(bytes.subarray(4, 8))).toBe('ftyp');
  }, 150_000);

  it("waitForGeneration rejects with the signal's reason", async () => {
    const ref = await client().uploadReference(readFixture('sample.png'));
    const created = await client().createGeneration({ prompt: 'never waited for', modelName: 'keyframe-local', startFrameKey: ref.s3_key, duration: '1s' });
    const reason = new Error('the caller gave up');
    const controller = new AbortController();
    const waiting = client().waitForGeneration(created.generations[0]!.generation_id, { signal: controller.signal });
    controller.abort(reason);
    await expect(waiting).rejects.toBe(reason);
  });

  it("waitForGeneration rejects with KeyframeError('timeout') once timeoutMs has passed", async () => {
    const ref = await client().uploadReference(readFixture('sample.png'));
    const created = await client().createGeneration({ prompt: 'too slow for the caller', modelName: 'keyframe-local', startFrameKey: ref.s3_key, duration: '1s' });
    const err = await client()
      .waitForGeneration(created.generations[0]!.generation_id, { timeoutMs: 1 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyframeError);
    expect(err).toMatchObject({ error: 'timeout', status: 0 });
  });
});

describe('listModels', () => {
  it('answers the registry, keyframe-local among it', async () => {
    const { models } = await client().listModels();
    expect(models.map((m) => m.name)).toContain('keyframe-local');
  });
});
