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
