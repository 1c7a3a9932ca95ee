import { fileTypeFromBuffer } from 'file-type/core';
import { KeyframeError } from './errors.js';

/** How many leading bytes file-type needs to recognise any type it knows (its own `reasonableDetectionSizeInBytes`). */
export const DETECTION_BYTES = 4100;

/**
 * file-type's names that Keyframe's allow-list spells otherwise (the `sniffedAs` aliases of
 * src/domain/media-types.ts): presign wants the allowed spelling.
 */
const ALLOWED_SPELLING: Readonly<Record<string, string>> = {
  'image/apng': 'image/png',
  'video/x-m4v': 'video/mp4',
  'audio/x-m4a': 'audio/mp4',
  'audio/vnd.wave': 'audio/wav',
  'audio/x-wav': 'audio/wav',
  'audio/x-flac': 'audio/flac',
  'audio/opus': 'audio/ogg',
};

/**
 * The content type to presign with, from the first bytes (browser-safe file-type core). The server
 * checks the bytes again at verification; this only saves the caller from naming the type.
 */
export async function detectContentType(head: Uint8Array): Promise<string> {
  const found = await fileTypeFromBuffer(head.subarray(0, DETECTION_BYTES));
  if (!found) {
    throw new KeyframeError('unknown_content_type', 'The file type could not be recognised from its first bytes; pass contentType explicitly');
  }
  return ALLOWED_SPELLING[found.mime] ?? found.mime;
}
