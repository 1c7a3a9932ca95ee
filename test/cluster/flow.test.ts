import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { ffprobePath } from '../../src/media/binaries.js';
import { api, clusterEnv, clusterOf, createGeneration, createKey, presign, uploadReference, waitSettled } from './cluster.js';

// Issue 12's walk-through across the nodes: every step on another node (and through nginx), each
// node seeing what the others wrote, because all of them share PostgreSQL, Redis and RGW.

const env = clusterEnv();
const scratch = await mkdtemp(path.join(tmpdir(), 'keyframe-cluster-flow-'));
afterAll(() => rm(scratch, { recursive: true, force: true }));

describe.skipIf(!env)('one generation across the cluster', () => {
  it('presign through nginx and on node 1, upload to RGW, create on node 2, poll on node 3, and the video plays', async () => {
    const cluster = clusterOf(env!);
    const [node1, node2, node3] = cluster.apiUrls as [string, string, string];
    const { key } = await createKey(cluster, 'flow');

    // Both presigns point at the store itself (RGW), signed alike whichever node answered.
    for (const base of [cluster.url, node1]) {
      const presigned = await presign(base, key);
      expect(presigned.status, JSON.stringify(presigned.body)).toBe(200);
      expect(presigned.body.upload_url.startsWith(`${cluster.env.S3_ENDPOINT}/${cluster.env.S3_BUCKET}/users/flow/`), presigned.body.upload_url).toBe(true);
    }
    const startFrame = await uploadReference(cluster.url, key, 'sample.png', 'image/png');
    const endFrame = await uploadReference(node1, key, 'sample.jpg', 'image/jpeg');
    // An upload made through one node is known to another.
    const status = await api(node3, 'GET', `/api/uploads/status?key=${encodeURIComponent(endFrame)}`, key);
    expect(status.body.state, JSON.stringify(status.body)).toBe('verified');

    const id = await createGeneration(node2, key, { startFrameKey: startFrame, endFrameKey: endFrame, duration: '2s', resolution: '480p' });
    const final = await waitSettled(node3, key, id, 90);
    expect(final.status, JSON.stringify(final)).toBe('completed');

    const video = await fetch(final.video_url, { signal: AbortSignal.timeout(15_000) });
    expect(video.status).toBe(200);
    expect(video.headers.get('content-type')).toBe('video/mp4');
    const file = path.join(scratch, `${id}.mp4`);
    await writeFile(file, Buffer.from(await video.arrayBuffer()));
    const { stdout } = await promisify(execFile)(
      ffprobePath(),
      ['-v', 'error', '-show_entries', 'stream=codec_type,codec_name,height:format=duration,format_name', '-of', 'json', file],
      { timeout: 30_000 },
    );
    const probed = JSON.parse(stdout) as { streams: { codec_type: string; codec_name: string; height?: number }[]; format: { duration: string; format_name: string } };
    expect(probed.format.format_name).toContain('mp4');
    expect(probed.streams.find((s) => s.codec_type === 'video')).toMatchObject({ codec_name: 'h264', height: 480 });
    expect(Number(probed.format.duration)).toBeCloseTo(2, 0);
  });
});
