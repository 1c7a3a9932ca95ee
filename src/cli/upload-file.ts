import { stat } from 'node:fs/promises';
import path from 'node:path';
import { KeyframeError, type KeyframeClient, type MediaInfo, type UploadState } from '../client/node.js';
import type { Out } from './context.js';
import { startProgress } from './progress.js';

/** One file's upload, as `keyframe upload --json` prints it. `failed`: no upload was made (no file, refused presign, store error). */
export interface UploadRow {
  file: string;
  s3_key: string | null;
  state: UploadState | 'failed';
  content_type: string | null;
  size: number | null;
  media: MediaInfo | null;
  reason?: string;
}

/** Whether `value` names a regular file here (so a reference flag's value is uploaded rather than taken as a key). */
export async function isLocalFile(value: string): Promise<boolean> {
  try {
    return (await stat(value)).isFile();
  } catch {
    return false;
  }
}

/**
 * Uploads one file with its progress on stderr, and the verification's verdict.
 * A failure of this file is a row (state `failed`, the reason); a refused key
 * (401, 403) is thrown instead, since every other file would fail the same way.
 */
export async function uploadFile(client: KeyframeClient, file: string, out: Out, contentType?: string): Promise<UploadRow> {
  let size: number;
  try {
    const stats = await stat(file);
    if (!stats.isFile()) return failed(file, 'not a regular file');
    size = stats.size;
  } catch (err) {
    return failed(file, (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message);
  }
  const progress = startProgress(out, file, size);
  try {
    const uploaded = await client.uploadReference(file, {
      ...(contentType !== undefined ? { contentType } : {}),
      fileName: path.basename(file),
      onProgress: ({ loaded, total }) => progress.update(loaded, total),
    });
    progress.done();
    const { status } = uploaded;
    return {
      file,
      s3_key: uploaded.s3_key,
      state: status.state,
      content_type: status.content_type,
      size: status.size,
      media: status.media,
      ...(status.reason !== undefined ? { reason: status.reason } : {}),
    };
  } catch (err) {
    progress.fail();
    if (err instanceof KeyframeError && (err.status === 401 || err.status === 403)) throw err;
    return failed(file, err instanceof Error ? err.message : String(err));
  }
}

const failed = (file: string, reason: string): UploadRow => ({ file, s3_key: null, state: 'failed', content_type: null, size: null, media: null, reason });
