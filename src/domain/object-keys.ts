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

/**
 * Objects of one run of a generation on a model worker (runner `http`), under
 * `users/<user_id>/generations/<generation_id>/run-<run_id>/`. No upload key
 * ever names these and no status answer serves them; they are removed when the
 * run ends. `run_id` is new for every run (a restart runs a job again), so no
 * key is ever written twice (the disk store writes a key once, even after a
 * delete) and an earlier run's URLs never touch a later run's objects.
 *
 * - `ref-<n>.<ext>`: the run's private copy of the job's n-th reference,
 *   written by the server alone from a read pinned to the verified ETag.
 *   Workers download these, so replaying an upload URL cannot change what a
 *   worker reads.
 * - `output.mp4`: the staging key the worker PUTs its video to. The server
 *   copies it, pinned, into `generationVideoKey` once the signed callback
 *   arrives; a replay of the PUT URL can only ever write here, and nothing
 *   serves this key.
 */
export function generationRunPrefix(userId: string, generationId: string, runId: string): string {
  return `users/${userId}/generations/${generationId}/run-${runId}/`;
}

/** See `generationRunPrefix`. */
export function generationReferenceCopyKey(userId: string, generationId: string, runId: string, index: number, extension: string): string {
  return `${generationRunPrefix(userId, generationId, runId)}ref-${index}.${extension}`;
}

/** See `generationRunPrefix`. */
export function generationStagingKey(userId: string, generationId: string, runId: string): string {
  return `${generationRunPrefix(userId, generationId, runId)}output.mp4`;
}

/** What an object in the store is, by its key alone: the reconciliation's first question. */
export type KeyRole =
  | { role: 'upload'; userId: string }
  | { role: 'video'; userId: string; generationId: string }
  | { role: 'run'; userId: string; generationId: string }
  | { role: 'unknown' };

const VIDEO_KEY = new RegExp(`^users/([A-Za-z0-9_-]{1,64})/generations/(${idPattern('gen')})\\.mp4$`);
const RUN_KEY = new RegExp(`^users/([A-Za-z0-9_-]{1,64})/generations/(${idPattern('gen')})/run-[A-Za-z0-9_-]{1,64}/[^/]+$`);

/** The role of a key in the layout above; `unknown` for anything Keyframe never writes. */
export function keyRole(key: string): KeyRole {
  const upload = parseUploadKey(key);
  if (upload) return { role: 'upload', userId: upload.userId };
  const video = VIDEO_KEY.exec(key);
  if (video) return { role: 'video', userId: video[1]!, generationId: video[2]! };
  const run = RUN_KEY.exec(key);
  if (run) return { role: 'run', userId: run[1]!, generationId: run[2]! };
  return { role: 'unknown' };
}

/** The prefix every object Keyframe writes lives under. */
export const KEY_ROOT = 'users/';
