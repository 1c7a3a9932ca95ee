import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { KeyframeError, type KeyframeClient, type MediaInfo, type UploadState } from '../client/node.js';
import { isTransientError } from '../client/retry.js';
import type { Out } from './context.js';
import { startProgress } from './progress.js';
import { UploadJournal } from './upload-journal.js';

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
 * A multipart upload is kept in `journal` until it completes: one cut short (a
 * kill, a lost network) is resumed by the same command on the same file.
 */
export async function uploadFile(
  client: KeyframeClient,
  file: string,
  out: Out,
  options: { contentType?: string | undefined; journal: UploadJournal },
): Promise<UploadRow> {
  const { contentType, journal } = options;
  let size: number;
  let fingerprint: string;
  try {
    const stats = await stat(file);
    if (!stats.isFile()) return failed(file, 'not a regular file');
    size = stats.size;
    fingerprint = UploadJournal.fingerprint({ baseUrl: client.baseUrl, realPath: await realpath(file), size, mtimeMs: stats.mtimeMs, contentType });
  } catch (err) {
    return failed(file, (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message);
  }
  // Only a multipart upload can be resumed: a smaller file never touches the journal.
  const resume = size >= client.multipartThreshold ? journal.get(fingerprint) : undefined;
  if (resume) out.stderr(`keyframe: ${file}: resuming the multipart upload of ${resume.key}`);
  let journaled = resume !== undefined;
  const progress = startProgress(out, file, size);
  try {
    const uploaded = await client.uploadReference(file, {
      ...(contentType !== undefined ? { contentType } : {}),
      fileName: path.basename(file),
      onProgress: ({ loaded, total }) => progress.update(loaded, total),
      ...(resume ? { resume } : {}),
      onMultipartCreated: (created) => {
        journaled = journal.set(fingerprint, created);
      },
    });
    if (journaled) journal.remove(fingerprint);
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
    const reason = err instanceof Error ? err.message : String(err);
    // A refusal is final (the server aborted the upload); a lost network or a 5xx is not.
    const resumable = journaled && isTransientError(err);
    if (journaled && !resumable) journal.remove(fingerprint);
    return failed(file, resumable ? `${reason} (run the same command again to resume it)` : reason);
  }
}

const failed = (file: string, reason: string): UploadRow => ({ file, s3_key: null, state: 'failed', content_type: null, size: null, media: null, reason });
