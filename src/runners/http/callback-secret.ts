import { createHash, createHmac } from 'node:crypto';

/**
 * Callback secrets are derived, never stored: any node holding the cluster's
 * signing secret computes a run's secret from the generation id and the run id,
 * and the database keeps only its SHA-256, so a reader of the database cannot
 * sign a callback.
 */

/** Fixes the purpose of the subkey, so it is never the key that signs the disk store's URLs. */
const CALLBACK_KEY_LABEL = 'keyframe/runner-callbacks/v1';

/** The key callback secrets are derived with: HMAC-SHA256(signingSecret, label). */
export function callbackKey(signingSecret: string): Buffer {
  return createHmac('sha256', signingSecret).update(CALLBACK_KEY_LABEL).digest();
}

/** The secret of one run: base64url(HMAC-SHA256(callbackKey, `<generation id>.<run id>`)). */
export function callbackSecret(key: Buffer, generationId: string, runId: string): string {
  return createHmac('sha256', key).update(`${generationId}.${runId}`).digest('base64url');
}

/** SHA-256 of a secret, hex: what the database keeps to recognise it. */
export function secretDigest(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}
