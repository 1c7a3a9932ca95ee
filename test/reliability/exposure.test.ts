import { chmod, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataDirWithKey } from '../../bench/lib/keys.js';
import { startKeyframe, type ChildServer } from '../../bench/lib/processes.js';
import { readFixture } from '../helpers/media-fixtures.js';
import { rawRequest, requestHead } from './support/raw-http.js';

/**
 * What the real `keyframe serve` process exposes besides its API answers
 * (issue 16, finding 6): the modes of the files it keeps, the headers of what
 * it serves, the webhook targets it accepts, and when it invites a body.
 */
let server: ChildServer;
let dataDir: string;
let key: string;

async function api(method: string, pathname: string, body?: unknown) {
  const res = await fetch(server.url + pathname, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any, headers: res.headers };
}

async function uploadPng(): Promise<string> {
  const presigned = await api('POST', '/api/s3/presign-upload', { kind: 'upload', contentType: 'image/png' });
  expect(presigned.status).toBe(200);
  const put = await fetch(presigned.body.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: new Uint8Array(readFixture('sample.png')) });
  expect(put.status).toBe(200);
  expect(put.headers.get('x-content-type-options')).toBe('nosniff');
  return presigned.body.s3_key as string;
}

/** Every file and directory below `dir`, with its permission bits. */
async function modesUnder(dir: string): Promise<{ path: string; dir: boolean; mode: number }[]> {
  const out: { path: string; dir: boolean; mode: number }[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    out.push({ path: full, dir: entry.isDirectory(), mode: (await stat(full)).mode & 0o777 });
    if (entry.isDirectory()) out.push(...(await modesUnder(full)));
  }
  return out;
}

beforeAll(async () => {
  ({ dataDir, key } = await dataDirWithKey('exposure'));
  // As an older version (or a careless operator) left them: readable by everyone.
  await chmod(dataDir, 0o755);
  await chmod(path.join(dataDir, 'keyframe.sqlite'), 0o644);
  const previous = process.umask(0o022);
  try {
    server = await startKeyframe('keyframe', dataDir);
  } finally {
    process.umask(previous);
  }
});

afterAll(async () => {
  await server?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true, maxRetries: 5 });
});

describe('exposure of the real server', () => {
  it('keeps the data dir 0700 and every file in it 0600, under umask 022', async () => {
    const s3Key = await uploadPng();
    expect((await api('GET', `/api/uploads/status?key=${encodeURIComponent(s3Key)}`)).body.state).toBe('verified');
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    const entries = await modesUnder(dataDir);
    expect(entries.some((e) => e.path.endsWith(`${s3Key.split('/').pop()}`))).toBe(true);
    for (const entry of entries) {
      // A directory inside a 0700 directory is out of reach anyway; the disk store keeps its own 0700 too.
      if (entry.dir) expect(entry.mode & 0o077, entry.path).toBe(0);
      else expect(entry.mode, entry.path).toBe(0o600);
    }
  });

  it('serves a rendered video with nosniff, its type and an inline disposition', async () => {
    const startFrameKey = await uploadPng();
    const created = await api('POST', '/api/generations', { prompt: 'exposure', modelName: 'keyframe-local', duration: '1s', resolution: '480p', startFrameKey });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const id = created.body.generations[0].generation_id as string;
    let status: any;
    for (let i = 0; i < 240; i++) {
      status = (await api('GET', `/api/generations/${id}`)).body;
      if (status.status !== 'generating') break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(status.status, JSON.stringify(status)).toBe('completed');
    const video = await fetch(status.video_url);
    expect(video.status).toBe(200);
    expect(video.headers.get('content-type')).toBe('video/mp4');
    expect(video.headers.get('x-content-type-options')).toBe('nosniff');
    expect(video.headers.get('content-disposition')).toMatch(/^inline/);
    expect(Buffer.from(await video.arrayBuffer()).subarray(4, 8).toString('latin1')).toBe('ftyp');
  });

  it('refuses webhook targets that disguise a loopback or private host in IPv6', async () => {
    const port = new URL(server.url).port;
    for (const host of ['[::127.0.0.1]', '[::ffff:0:7f00:1]', '[2002:7f00:1::]', '[100::1]', '[2001::7f00:1]', '[::ffff:127.0.0.1]', '[::1]']) {
      const res = await api('POST', '/api/generations', { prompt: 'ssrf', modelName: 'keyframe-local', duration: '1s', webhook_url: `http://${host}:${port}/hook` });
      expect(res.status, host).toBe(400);
      expect(res.body).toMatchObject({ error: 'validation_error', message: expect.stringMatching(/webhook_url .*private/) });
    }
  });

  it('answers an absolute-form PUT with Expect: 100-continue and a bad signature with the refusal, never 100 Continue', async () => {
    const presigned = await api('POST', '/api/s3/presign-upload', { kind: 'upload', contentType: 'image/png' });
    const tampered = presigned.body.upload_url.replace(/X-Amz-Signature=[0-9a-f]{4}/, 'X-Amz-Signature=0000');
    const res = await rawRequest(Number(new URL(server.url).port), {
      parts: [requestHead('PUT', tampered, { 'content-type': 'image/png', 'content-length': 1000, expect: '100-continue' })],
      timeoutMs: 5000,
    });
    expect(res.raw).not.toMatch(/100 Continue/i);
    expect(res.status).toBe(403);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
  });
});
