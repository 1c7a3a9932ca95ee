import { idPattern, randomId, timeOrderedId, timeOrderedIdPattern } from './ids.js';

/**
 * The one place that knows how object keys are laid out. Every key a user can
 * name lives under `users/<user_id>/`, which is what ownership checks rely on.
 */
export const USER_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

const UPLOAD_KEY = new RegExp(
  `^users/([A-Za-z0-9_-]{1,64})/user-uploads/(${timeOrderedIdPattern('batch')})/(${idPattern('file')})\\.([a-z0-9]{2,5})$`,
);

export interface UploadKey {
  key: string;
  userId: string;
  batchId: string;
  fileId: string;
  extension: string;
}

/** A fresh, unguessable upload key for one file of `userId`; a user's keys sort by creation time. */
export function newUploadKey(userId: string, extension: string): UploadKey {
  const batchId = timeOrderedId('batch');
  const fileId = randomId('file');
  return { key: `users/${userId}/user-uploads/${batchId}/${fileId}.${extension}`, userId, batchId, fileId, extension };
}

/** Parses an upload key; undefined when the string is not one (whatever it contains). */
export function parseUploadKey(key: string): UploadKey | undefined {
  const m = UPLOAD_KEY.exec(key);
  if (!m) return undefined;
  return { key, userId: m[1]!, batchId: m[2]!, fileId: m[3]!, extension: m[4]! };
}

/** Key of a finished generation's video. */
export function generationVideoKey(userId: string, generationId: string): string {
  return `users/${userId}/generations/${generationId}.mp4`;
}
