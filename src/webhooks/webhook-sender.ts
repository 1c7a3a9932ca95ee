import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { WebhookDelivery } from '../domain/generations/webhooks.js';
import { guardedLookup, isPrivateAddress, webhookTargetRefusal } from './address-guard.js';
import { SIGNATURE_HEADER, signWebhook, TIMESTAMP_HEADER } from './signature.js';

/** The delivery's id (its `webhook_deliveries` row), the same on every attempt: receivers de-duplicate on it. */
export const DELIVERY_HEADER = 'x-keyframe-delivery';

/** The default time limit of one attempt. */
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 10_000;

export interface WebhookSenderOptions {
  /** Let deliveries reach loopback/private addresses (KEYFRAME_WEBHOOK_ALLOW_PRIVATE). */
  allowPrivate: boolean;
  /** Time limit of one attempt, answer included (DEFAULT_ATTEMPT_TIMEOUT_MS). */
  attemptTimeoutMs?: number;
}

/**
 * What one attempt came to: the receiver's HTTP status, or why no answer came,
 * as a code only (`ECONNREFUSED`, `EPRIVATEADDRESS`, `ETIMEDOUT`, …): never a
 * message, which could quote the URL.
 */
export type SendOutcome = { status: number } | { error: string };

/**
 * One signed POST of a webhook: the JSON body with a timestamp and an HMAC
 * signature, to a target that passes the address guard, within the attempt's
 * time limit. It keeps no state: retries are the dispatcher's
 * (src/webhooks/webhook-dispatcher.ts). Also the create-time check of a target.
 */
export class WebhookSender implements WebhookDelivery {
  readonly attemptTimeoutMs: number;

  constructor(private readonly options: WebhookSenderOptions) {
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS;
  }

  refusal(url: string): Promise<string | null> {
    return webhookTargetRefusal(url, this.options.allowPrivate);
  }

  /** POSTs `payload` once; never throws. After `signal` aborts, the outcome is an error (the caller knows why). */
  async send(url: string, secret: string, payload: string, deliveryId: string, signal: AbortSignal): Promise<SendOutcome> {
    const timeout = AbortSignal.timeout(this.attemptTimeoutMs);
    try {
      return { status: await this.post(new URL(url), secret, payload, deliveryId, AbortSignal.any([signal, timeout])) };
    } catch (err) {
      if (timeout.aborted) return { error: 'ETIMEDOUT' };
      const { code, name } = err as NodeJS.ErrnoException;
      return { error: code ?? name ?? 'Error' };
    }
  }

  private post(target: URL, secret: string, payload: string, deliveryId: string, signal: AbortSignal): Promise<number> {
    const host = target.hostname.replace(/^\[|\]$/g, '');
    // A literal IP is never looked up, so the lookup guard would not see it.
    if (!this.options.allowPrivate && net.isIP(host) && isPrivateAddress(host)) {
      return Promise.reject(Object.assign(new Error('private address'), { code: 'EPRIVATEADDRESS' }));
    }
    const timestamp = Math.floor(Date.now() / 1000);
    const client = target.protocol === 'https:' ? https : http;
    return new Promise<number>((resolve, reject) => {
      const req = client.request(
        target,
        {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(payload),
            'user-agent': 'keyframe-webhooks',
            [TIMESTAMP_HEADER]: String(timestamp),
            [SIGNATURE_HEADER]: signWebhook(secret, timestamp, payload),
            [DELIVERY_HEADER]: deliveryId,
          },
          lookup: this.options.allowPrivate ? undefined : guardedLookup,
          signal,
        },
        (res) => {
          // The answer is read to its end (within the time limit) so the receiver is not cut off mid-reply.
          res.resume();
          res.once('end', () => resolve(res.statusCode ?? 0));
          res.once('error', reject);
          res.once('close', () => reject(Object.assign(new Error('answer cut off'), { code: 'ECONNRESET' })));
        },
      );
      req.once('error', reject);
      req.end(payload);
    });
  }
}
