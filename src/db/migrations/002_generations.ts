import type { Kysely } from 'kysely';
import { textType } from '../dialect.js';

export async function up(db: Kysely<unknown>): Promise<void> {
  // Text columns compare byte by byte on both dialects (src/db/dialect.ts).
  const text = textType(db);
  await db.schema
    .createTable('generations')
    .addColumn('id', text, (c) => c.primaryKey())
    .addColumn('user_id', text, (c) => c.notNull().references('users.id'))
    .addColumn('model_name', text, (c) => c.notNull())
    .addColumn('prompt', text, (c) => c.notNull())
    .addColumn('params', text, (c) => c.notNull())
    .addColumn('template_id', text)
    .addColumn('webhook_url', text)
    .addColumn('status', text, (c) => c.notNull())
    .addColumn('error', text)
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('video_key', text)
    .addColumn('created_at', text, (c) => c.notNull())
    .addColumn('started_at', text)
    .addColumn('completed_at', text)
    .execute();
  await db.schema.createIndex('generations_user_id').on('generations').column('user_id').execute();
  // The queue's scan: jobs still generating, oldest first.
  await db.schema.createIndex('generations_status_created').on('generations').columns(['status', 'created_at']).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('generations').execute();
}
