import { createHmac } from 'node:crypto';

export const TIMESTAMP_HEADER = 'x-keyframe-timestamp';
export const SIGNATURE_HEADER = 'x-keyframe-signature';

/**
 * The signature of one delivery: `v1=<hex HMAC-SHA256 of "${timestamp}.${body}">`
 * with the user's webhook secret. Signing the timestamp lets receivers refuse
 * replays of old deliveries (docs/generations.md).
 */
export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}
