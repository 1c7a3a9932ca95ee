import type { Kysely } from 'kysely';

/**
 * Indexes for per-user quotas and the fair queue (issue 16), so that each of
 * their queries is an index range over one user's rows (or over the queued
 * jobs), never a scan of the table:
 *
 * - `uploads_user_state (user_id, state, expires_at, size)`: a user's live pending
 *   uploads (`state = 'pending' AND expires_at > ?`, a range) and the sum of
 *   their stored sizes (`state IN ('uploaded', 'verified')`, covered by the index).
 *   It replaces `uploads_user_id`, whose lookups it serves as a prefix, so a
 *   presign still maintains one secondary index.
 * - `generations_user_status (user_id, status)`: a user's queued + running count.
 * - `generations_user_created (user_id, created_at)`: generations of the last hour.
 * - `generations_user_started (user_id, started_at)`: when a user was last served (max).
 * - `generations_queue (status, started_at, user_id, created_at)`: queued jobs grouped by
 *   user, and one user's oldest queued job, in order.
 *
 * Only the portable schema builder is used, so the same migration runs on PostgreSQL.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex('uploads_user_state').on('uploads').columns(['user_id', 'state', 'expires_at', 'size']).execute();
  await db.schema.dropIndex('uploads_user_id').execute();
  await db.schema.createIndex('generations_user_status').on('generations').columns(['user_id', 'status']).execute();
  await db.schema.createIndex('generations_user_created').on('generations').columns(['user_id', 'created_at']).execute();
  await db.schema.createIndex('generations_user_started').on('generations').columns(['user_id', 'started_at']).execute();
  await db.schema.createIndex('generations_queue').on('generations').columns(['status', 'started_at', 'user_id', 'created_at']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('generations_queue').execute();
  await db.schema.dropIndex('generations_user_started').execute();
  await db.schema.dropIndex('generations_user_created').execute();
  await db.schema.dropIndex('generations_user_status').execute();
  await db.schema.createIndex('uploads_user_id').on('uploads').column('user_id').execute();
  await db.schema.dropIndex('uploads_user_state').execute();
}
