import type { Insertable } from 'kysely';
import type { WebhookDeliveriesTable } from '../../db/schema.js';
import { randomId } from '../ids.js';

/** What creating a generation needs from webhooks: the check of its `webhook_url` (src/webhooks/ implements it). */
export interface WebhookDelivery {
  /** Why `url` may not be called (scheme, private address, unresolvable), or null when it may. */
  refusal(url: string): Promise<string | null>;
}

/**
 * What settling a generation needs from webhooks. The delivery itself is a
 * `webhook_deliveries` row (`pendingDelivery`) that the worker writes in the
 * transaction settling the generation; a dispatcher (src/webhooks/) sends it.
 */
export interface WebhookDispatch {
  /** A delivery row was committed: wakes the dispatchers, in this process and elsewhere. Never throws. */
  queued(): Promise<void>;
}

/** The row of a new delivery of `generationId`, due at once. */
export function pendingDelivery(generationId: string, now: string): Insertable<WebhookDeliveriesTable> {
  return {
    id: randomId('whd'),
    generation_id: generationId,
    state: 'pending',
    attempts: 0,
    next_attempt_at: now,
    last_error: null,
    worker_id: null,
    lease_expires_at: null,
    created_at: now,
    delivered_at: null,
  };
}
