import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import type { GenerationJob, GenerationParams, JobReference, ReferenceField } from '../../src/domain/generations/job.js';
import { randomId } from '../../src/domain/ids.js';
import { lookupMediaType } from '../../src/domain/media-types.js';
import { generationVideoKey, newUploadKey } from '../../src/domain/object-keys.js';
import { ffmpegPath } from '../../src/media/binaries.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
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

// ---- Hostile media and direct runner jobs (test seams) ----------------------------------------

/**
 * An "MP3" that is an ID3v2 tag of `padding` bytes (longer than the 64 KiB a
 * sniffer reads) followed by an HLS playlist naming `target`, a local path
 * (absolute, or relative to the file itself). Probed by ffmpeg, the playlist
 * is what it opens: it then renders the file the playlist names.
 */
export function id3HlsPlaylist(target: string, padding = 70_000): Buffer {
  const size = Buffer.from([(padding >> 21) & 0x7f, (padding >> 14) & 0x7f, (padding >> 7) & 0x7f, padding & 0x7f]);
  const tag = Buffer.concat([Buffer.from('ID3'), Buffer.from([3, 0, 0]), size, Buffer.alloc(padding)]);
  return Buffer.concat([tag, Buffer.from(`#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:3,\n${target}\n#EXT-X-ENDLIST\n`)]);
}

/** A PNG with a valid signature and header (640x480 RGB) and undecodable image data (deterministic, ~200 KB). */
export function garbagePng(dataBytes = 200_000): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(640, 0);
  header.writeUInt32BE(480, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  const data = Buffer.alloc(dataBytes);
  let s = 0x2545f491;
  for (let i = 0; i < data.length; i++) data[i] = (s = (s * 1103515245 + 12345) >>> 0) >>> 24;
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', header), pngChunk('IDAT', data), pngChunk('IEND', Buffer.alloc(0))]);
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

function crc32(bytes: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? 0xedb88320 ^ (crc >>> 1) : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** Runs ffmpeg (at most 60 s) and returns its stderr. */
async function ffmpeg(args: string[]): Promise<string> {
  const { stderr } = await promisify(execFile)(ffmpegPath(), ['-hide_banner', '-nostdin', ...args], { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
  return stderr;
}

/** A genuine MP3 of a 1 kHz tone at full scale (max_volume about 0 dB), written to `file`. */
export async function makeLoudTone(file: string, seconds = 3): Promise<Buffer> {
  await ffmpeg(['-loglevel', 'error', '-y', '-f', 'lavfi', '-i', `sine=frequency=1000:duration=${seconds}`, '-af', 'volume=8', '-c:a', 'libmp3lame', file]);
  return readFile(file);
}

/** A genuine PNG of one flat colour, written to `file`. */
export async function makeFlatPng(file: string, colour: string, size = '64x64'): Promise<Buffer> {
  await ffmpeg(['-loglevel', 'error', '-y', '-f', 'lavfi', '-i', `color=c=${colour}:s=${size}`, '-frames:v', '1', '-f', 'image2', '-c:v', 'png', file]);
  return readFile(file);
}

/** The loudest sample of a file's audio in dB (volumedetect), or null when it has no audio stream. */
export async function maxVolumeDb(file: string): Promise<number | null> {
  const stderr = await ffmpeg(['-i', file, '-map', '0:a:0?', '-af', 'volumedetect', '-f', 'null', '-']);
  const m = /max_volume: (-?[0-9.]+|-inf) dB/.exec(stderr);
  if (!m) return null;
  return m[1] === '-inf' ? -Infinity : Number(m[1]);
}

/**
 * Stores `bytes` under a fresh upload key of `userId` with `store.put`, as a
 * test seam past verification, and returns the job reference a verified
 * upload would have (its ETag read from the store).
 */
export async function storeReference(
  store: ObjectStore,
  userId: string,
  field: ReferenceField,
  contentType: string,
  bytes: Buffer,
): Promise<JobReference> {
  const media = lookupMediaType(contentType)!;
  const { key } = newUploadKey(userId, media.extension);
  await store.put(key, Readable.from([bytes]), contentType);
  const info = await store.head(key);
  return { field, key, contentType, family: media.family, etag: info!.etag };
}

/** A job as the worker hands it to a runner. */
export function runnerJob(userId: string, references: JobReference[], params: Partial<GenerationParams> = {}): GenerationJob {
  const id = randomId('gen');
  return {
    id,
    userId,
    modelName: 'keyframe-local',
    prompt: 'test seam',
    params: {
      aspectRatio: '16:9',
      duration: '1s',
      durationSeconds: 1,
      resolution: '480p',
      resolutionLines: 480,
      hasAudio: references.some((r) => r.field === 'audioKey'),
      references,
      ...params,
    },
    videoKey: generationVideoKey(userId, id),
    deadline: new Date(Date.now() + 600_000),
  };
}

/** A genuine, valid PNG of `width` x `height` black RGB pixels: small on disk, width*height*3 bytes once decoded. */
export async function hugePng(width: number, height: number): Promise<Buffer> {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8;
  header[9] = 2;
  const row = Buffer.alloc(1 + width * 3);
  const compressed: Buffer[] = [];
  await pipeline(
    Readable.from((function* rows() {
      for (let y = 0; y < height; y++) yield row;
    })()),
    zlib.createDeflate({ level: 9 }),
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        compressed.push(chunk);
        callback();
      },
    }),
  );
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', header), pngChunk('IDAT', Buffer.concat(compressed)), pngChunk('IEND', Buffer.alloc(0))]);
}
