import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import type { TestServer } from './server.js';

const require = createRequire(import.meta.url);
const ffprobePath = (require('@ffprobe-installer/ffprobe') as { path: string }).path;

/** Polls Get Generation Status (every 250 ms, at most `timeoutMs`) until the generation leaves `generating`. */
export async function waitForGeneration(
  api: Pick<TestServer, 'api'>['api'],
  key: string,
  id: string,
  timeoutMs = 60_000,
): Promise<{ status: number; body: any }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await api('GET', `/api/generations/${id}`, { key });
    if (res.status !== 200 || res.body.status !== 'generating') return res;
    if (Date.now() > deadline) throw new Error(`generation ${id} still generating after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export interface ProbedVideo {
  formatName: string;
  duration: number;
  video: { codec_name: string; width: number; height: number; pix_fmt: string } | undefined;
  audio: { codec_name: string } | undefined;
}

/** What ffprobe says about a media file. */
export async function probe(file: string): Promise<ProbedVideo> {
  const { stdout } = await promisify(execFile)(ffprobePath, ['-v', 'error', '-show_format', '-show_streams', '-of', 'json', file]);
  const info = JSON.parse(stdout) as { format: { format_name: string; duration: string }; streams: any[] };
  return {
    formatName: info.format.format_name,
    duration: Number(info.format.duration),
    video: info.streams.find((s) => s.codec_type === 'video'),
    audio: info.streams.find((s) => s.codec_type === 'audio'),
  };
}
