import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import type { ObjectStore } from './object-store.js';

/** Why a verified object could not be copied: replaced since it was verified, gone, or larger than allowed. */
export type LocalCopyRefusal = 'changed' | 'missing' | 'too_large';

/**
 * Copies the object `key`, pinned to the bytes with ETag `etag`, into `file`
 * (created new, mode 0600, in a directory private to the caller). At most
 * `maxBytes` are written. Media tools then read that local file only, never a
 * URL and never the store. Resolves with null on success.
 */
export async function copyVerifiedToFile(
  store: ObjectStore,
  key: string,
  etag: string,
  file: string,
  options: { maxBytes: number; signal: AbortSignal },
): Promise<LocalCopyRefusal | null> {
  const body = await store.openVerified(key, etag);
  if (body === 'changed' || body === 'missing') return body;
  let written = 0;
  let tooLarge = false;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      written += chunk.length;
      if (written > options.maxBytes) {
        tooLarge = true;
        return callback(new Error('object larger than allowed'));
      }
      callback(null, chunk);
    },
  });
  try {
    await pipeline(body, meter, fs.createWriteStream(file, { flags: 'wx', mode: 0o600 }), { signal: options.signal });
  } catch (err) {
    await fs.promises.rm(file, { force: true });
    if (tooLarge) return 'too_large';
    throw err;
  }
  return null;
}
