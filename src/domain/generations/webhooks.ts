/** What generations need from webhook delivery (src/webhooks/ implements it). */
export interface WebhookDelivery {
  /** Why `url` may not be called (scheme, private address, unresolvable), or null when it may. */
  refusal(url: string): Promise<string | null>;
  /** Sends `body` signed with `secret`, retrying in the background; never throws, never blocks the caller. */
  deliver(url: string, secret: string, body: unknown): void;
}
