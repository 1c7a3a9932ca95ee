import { sql, type Kysely } from 'kysely';

/**
 * The multipart sweep (issue 13, src/domain/multipart-sweep.ts) reads the expired open
 * multipart uploads of every user: `state = 'pending' AND multipart_upload_id IS NOT NULL
 * AND expires_at <= now ORDER BY expires_at LIMIT n`. `uploads_user_state` starts with
 * `user_id`, so without this index that query is a scan of the whole table. This one is
 * partial (multipart rows only, on both SQLite and PostgreSQL), so single-PUT presigns do
 * not maintain it, and the sweep's query is one index range in expiry order.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createIndex('uploads_multipart_expiry')
    .on('uploads')
    .columns(['state', 'expires_at'])
    .where(sql.ref('multipart_upload_id'), 'is not', null)
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('uploads_multipart_expiry').execute();
}
