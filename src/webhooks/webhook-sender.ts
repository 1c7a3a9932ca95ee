import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import type { WebhookDelivery } from '../domain/generations/webhooks.js';
import { guardedLookup, isPrivateAddress, webhookTargetRefusal } from './address-guard.js';
import { SIGNATURE_HEADER, signWebhook, TIMESTAMP_HEADER } from './signature.js';

export interface WebhookSenderOptions {
  /** Let deliveries reach loopback/private addresses (KEYFRAME_WEBHOOK_ALLOW_PRIVATE). */
  allowPrivate: boolean;
  /** Attempts per delivery, the first included. */
  maxAttempts?: number;
  /** Wait before the first retry; doubled after each. */
  firstRetryMs?: number;
  /** Time limit of one attempt. */
  attemptTimeoutMs?: number;
  log: (message: string, details: Record<string, unknown>) => void;
}

/**
 * Delivers webhooks in the background: a POST of the JSON body with a
 * timestamp and an HMAC signature, retried with exponential backoff on a
 * network error or a non-2xx answer, a bounded number of times. Pending
 * retries live in memory and end when the server stops.
 */
export class WebhookSender implements WebhookDelivery {
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly inFlight = new Set<AbortController>();
  private stopped = false;
  private readonly maxAttempts: number;
  private readonly firstRetryMs: number;
  private readonly attemptTimeoutMs: number;

  constructor(private readonly options: WebhookSenderOptions) {
    this.maxAttempts = options.maxAttempts ?? 5;
    this.firstRetryMs = options.firstRetryMs ?? 2000;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? 10_000;
  }

  refusal(url: string): Promise<string | null> {
    return webhookTargetRefusal(url, this.options.allowPrivate);
  }

  deliver(url: string, secret: string, body: unknown): void {
    const payload = JSON.stringify(body);
    const deliveryId = randomUUID();
    const attempt = (n: number) => {
      if (this.stopped) return;
      this.post(url, secret, payload, deliveryId)
        .then((status) => (status >= 200 && status < 300 ? null : `HTTP ${status}`))
        .catch((err: Error) => (err as NodeJS.ErrnoException).code ?? err.message)
        .then((failure) => {
          if (failure === null) return;
          const target = new URL(url).origin;
          if (n >= this.maxAttempts) return this.options.log('webhook delivery gave up', { target, deliveryId, attempts: n, failure });
          this.options.log('webhook delivery failed; will retry', { target, deliveryId, attempt: n, failure });
          const timer = setTimeout(() => {
            this.timers.delete(timer);
            attempt(n + 1);
          }, this.firstRetryMs * 2 ** (n - 1));
          timer.unref();
          this.timers.add(timer);
        });
    };
    attempt(1);
  }

  /** Cancels pending retries and in-flight attempts. */
  stop(): void {
    this.stopped = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const controller of this.inFlight) controller.abort();
  }

  private post(url: string, secret: string, payload: string, deliveryId: string): Promise<number> {
    const target = new URL(url);
    const host = target.hostname.replace(/^\[|\]$/g, '');
    // A literal IP is never looked up, so the lookup guard would not see it.
    if (!this.options.allowPrivate && net.isIP(host) && isPrivateAddress(host)) {
      return Promise.reject(Object.assign(new Error('private address'), { code: 'EPRIVATEADDRESS' }));
    }
    const timestamp = Math.floor(Date.now() / 1000);
    const controller = new AbortController();
    this.inFlight.add(controller);
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
            'x-keyframe-delivery': deliveryId,
          },
          lookup: this.options.allowPrivate ? undefined : guardedLookup,
          signal: AbortSignal.any([controller.signal, AbortSignal.timeout(this.attemptTimeoutMs)]),
        },
        (res) => {
          res.resume();
          res.once('end', () => resolve(res.statusCode ?? 0));
          res.once('error', reject);
        },
      );
      req.once('error', reject);
      req.end(payload);
    }).finally(() => this.inFlight.delete(controller));
  }
}
