import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestServer } from './server.js';

/** test/fixtures/media/, made by scripts/make-fixtures.sh (see the README there). */
export const MEDIA_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'media');

export interface GenuineFixture {
  file: string;
  /** The content type a client would declare for it. */
  contentType: string;
  /** What `file-type` reports for it (pinned, so a table change that stops matching shows up). */
  sniffedAs: string;
}

/** One genuine file per entry of the media-type table. */
export const GENUINE: readonly GenuineFixture[] = [
  { file: 'sample.png', contentType: 'image/png', sniffedAs: 'image/png' },
  { file: 'sample.jpg', contentType: 'image/jpeg', sniffedAs: 'image/jpeg' },
  { file: 'sample.webp', contentType: 'image/webp', sniffedAs: 'image/webp' },
  { file: 'sample.gif', contentType: 'image/gif', sniffedAs: 'image/gif' },
  { file: 'sample.mp4', contentType: 'video/mp4', sniffedAs: 'video/mp4' },
  { file: 'sample.mov', contentType: 'video/quicktime', sniffedAs: 'video/quicktime' },
  { file: 'sample.webm', contentType: 'video/webm', sniffedAs: 'video/webm' },
  { file: 'sample.mp3', contentType: 'audio/mpeg', sniffedAs: 'audio/mpeg' },
  { file: 'sample.wav', contentType: 'audio/wav', sniffedAs: 'audio/wav' },
  { file: 'sample.m4a', contentType: 'audio/mp4', sniffedAs: 'audio/x-m4a' },
  { file: 'sample.aac', contentType: 'audio/aac', sniffedAs: 'audio/aac' },
  { file: 'sample.ogg', contentType: 'audio/ogg', sniffedAs: 'audio/ogg' },
  { file: 'sample.weba', contentType: 'audio/webm', sniffedAs: 'video/webm' },
  { file: 'sample.flac', contentType: 'audio/flac', sniffedAs: 'audio/flac' },
];

/** Genuine files whose headers lie beyond the first 64 KiB: each must verify, with the media recorded. */
export const GENUINE_DEEP: readonly (GenuineFixture & { why: string })[] = [
  { file: 'large-exif.jpg', contentType: 'image/jpeg', sniffedAs: 'image/jpeg', why: 'XMP markup, then an EXIF segment pushing the SOF past 64 KiB' },
  { file: 'large-id3.mp3', contentType: 'audio/mpeg', sniffedAs: 'audio/mpeg', why: 'two ID3 tags in a row, the first padded past 64 KiB' },
];

/** What verification learns from each genuine file (ffprobe's codec names). */
export const GENUINE_MEDIA: Readonly<Record<string, { width: number | null; height: number | null; video_codec: string | null; audio_codec: string | null; duration: boolean }>> = {
  'sample.png': { width: 16, height: 16, video_codec: 'png', audio_codec: null, duration: false },
  'sample.jpg': { width: 16, height: 16, video_codec: 'mjpeg', audio_codec: null, duration: false },
  'large-exif.jpg': { width: 16, height: 16, video_codec: 'mjpeg', audio_codec: null, duration: false },
  'sample.webp': { width: 16, height: 16, video_codec: 'webp', audio_codec: null, duration: false },
  'sample.gif': { width: 16, height: 16, video_codec: 'gif', audio_codec: null, duration: false },
  'sample.mp4': { width: 32, height: 32, video_codec: 'h264', audio_codec: null, duration: true },
  'sample.mov': { width: 32, height: 32, video_codec: 'h264', audio_codec: null, duration: true },
  'sample.webm': { width: 32, height: 32, video_codec: 'vp8', audio_codec: null, duration: true },
  'sample.mp3': { width: null, height: null, video_codec: null, audio_codec: 'mp3', duration: true },
  'large-id3.mp3': { width: null, height: null, video_codec: null, audio_codec: 'mp3', duration: true },
  'sample.wav': { width: null, height: null, video_codec: null, audio_codec: 'pcm_u8', duration: true },
  'sample.m4a': { width: null, height: null, video_codec: null, audio_codec: 'aac', duration: true },
  'sample.aac': { width: null, height: null, video_codec: null, audio_codec: 'aac', duration: true },
  'sample.ogg': { width: null, height: null, video_codec: null, audio_codec: 'vorbis', duration: true },
  'sample.weba': { width: null, height: null, video_codec: null, audio_codec: 'opus', duration: true },
  'sample.flac': { width: null, height: null, video_codec: null, audio_codec: 'flac', duration: true },
};

export interface HostileFixture {
  file: string;
  /** The type it is declared as. */
  contentType: string;
  /** The rejection reason must match: it names what was wrong. */
  reason: RegExp;
}

/** The containers in disguise of issue 16 (test/fixtures/media/README.md): each must be rejected. */
export const HOSTILE_MEDIA: readonly HostileFixture[] = [
  { file: 'id3-hls.mp3', contentType: 'audio/mpeg', reason: /HLS\/M3U playlist \(#EXTM3U\) at byte 70010/ },
  { file: 'id3-html-png.png', contentType: 'image/png', reason: /an ID3 tag precedes the image\/png data/ },
  { file: 'id3-truncated.png', contentType: 'image/png', reason: /an ID3 tag precedes the image\/png data/ },
  { file: 'id3-truncated.mp4', contentType: 'video/mp4', reason: /an ID3 tag precedes the video\/mp4 data/ },
  { file: 'gif-html.gif', contentType: 'image/gif', reason: /HTML markup \(<html>\) at byte 6: an HTML polyglot/ },
  { file: 'garbage.png', contentType: 'image/png', reason: /the image data could not be decoded/ },
  { file: 'huge-dimensions.png', contentType: 'image/png', reason: /8000×8000 pixels \(64 MP\), over the limit of 40 MP/ },
  { file: 'polyglot-gif-js.gif', contentType: 'image/gif', reason: /10799×16 pixels, over the limit of 8192 pixels a side/ },
];

export const readFixture = (file: string): Buffer => readFileSync(path.join(MEDIA_DIR, file));

/** Presigns an upload for `key`'s user over the API and PUTs `bytes` to its URL, as a client would. */
export async function presignAndPut(
  server: TestServer,
  apiKey: string,
  contentType: string,
  bytes: Buffer | null,
): Promise<{ s3_key: string; upload_url: string; max_bytes: number }> {
  const presigned = await server.api('POST', '/api/s3/presign-upload', { key: apiKey, body: { kind: 'upload', contentType } });
  if (presigned.status !== 200) throw new Error(`presign failed: ${presigned.status} ${JSON.stringify(presigned.body)}`);
  if (bytes !== null) {
    const res = await fetch(presigned.body.upload_url, { method: 'PUT', headers: { 'content-type': contentType }, body: new Uint8Array(bytes) });
    if (res.status !== 200) throw new Error(`upload failed: ${res.status} ${await res.text()}`);
  }
  return presigned.body;
}

/**
 * `mp4` grown to `size` bytes by a trailing `free` box: still a real MP4 whose boxes add up to
 * its size, so verification (truncation check, ffprobe) accepts it. For large-upload tests.
 */
export function padMp4(mp4: Buffer, size: number): Buffer {
  if (size < mp4.length + 8) throw new Error(`padMp4: ${size} bytes leave no room for a free box after ${mp4.length}`);
  const free = Buffer.alloc(size - mp4.length);
  free.writeUInt32BE(free.length, 0);
  free.write('free', 4, 'latin1');
  return Buffer.concat([mp4, free]);
}
