import type { Kysely } from 'kysely';
import { textType } from '../dialect.js';

/**
 * Durable webhook deliveries (issue 12): a delivery is a row, written in the
 * transaction that settles its generation, and sent by whichever worker claims
 * it (src/webhooks/), so a retry survives a restart and any worker may send it.
 *
 * - `state`: `pending` until sent; then `delivered`, or `failed` once its attempts are used up.
 * - `next_attempt_at`: when it is due (backoff after each failed attempt).
 * - `worker_id`, `lease_expires_at`: the claim of the worker sending it now; a lapsed claim is taken over.
 * - `webhook_deliveries_due (state, next_attempt_at)`: the dispatcher's scan is one index range.
 */
export async function up(db: Kysely<any>): Promise<void> {
  const text = textType(db);
  await db.schema
    .createTable('webhook_deliveries')
    .addColumn('id', text, (c) => c.primaryKey())
    .addColumn('generation_id', text, (c) => c.notNull().references('generations.id'))
    .addColumn('state', text, (c) => c.notNull())
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', text, (c) => c.notNull())
    .addColumn('last_error', text)
    .addColumn('worker_id', text)
    .addColumn('lease_expires_at', text)
    .addColumn('created_at', text, (c) => c.notNull())
    .addColumn('delivered_at', text)
    .execute();
  await db.schema.createIndex('webhook_deliveries_due').on('webhook_deliveries').columns(['state', 'next_attempt_at']).execute();
  await db.schema.createIndex('webhook_deliveries_generation').on('webhook_deliveries').column('generation_id').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('webhook_deliveries').execute();
}
