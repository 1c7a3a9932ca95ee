import type { Kysely } from 'kysely';
import { textType } from '../dialect.js';

export async function up(db: Kysely<unknown>): Promise<void> {
  // Text columns compare byte by byte on both dialects (src/db/dialect.ts).
  const text = textType(db);
  await db.schema
    .createTable('users')
    .addColumn('id', text, (c) => c.primaryKey())
    .addColumn('webhook_secret', text, (c) => c.notNull())
    .addColumn('created_at', text, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('api_keys')
    .addColumn('id', text, (c) => c.primaryKey())
    .addColumn('user_id', text, (c) => c.notNull().references('users.id'))
    .addColumn('key_hash', text, (c) => c.notNull().unique())
    .addColumn('display_prefix', text, (c) => c.notNull())
    .addColumn('scopes', text, (c) => c.notNull())
    .addColumn('name', text)
    .addColumn('created_at', text, (c) => c.notNull())
    .addColumn('revoked_at', text)
    .execute();
  await db.schema.createIndex('api_keys_user_id').on('api_keys').column('user_id').execute();

  await db.schema
    .createTable('uploads')
    .addColumn('s3_key', text, (c) => c.primaryKey())
    .addColumn('user_id', text, (c) => c.notNull().references('users.id'))
    .addColumn('content_type', text, (c) => c.notNull())
    .addColumn('max_bytes', 'bigint', (c) => c.notNull())
    .addColumn('content_length', 'bigint')
    .addColumn('file_name', text)
    .addColumn('state', text, (c) => c.notNull())
    .addColumn('size', 'bigint')
    .addColumn('sha256', text)
    .addColumn('sniffed_type', text)
    .addColumn('reason', text)
    .addColumn('created_at', text, (c) => c.notNull())
    .addColumn('expires_at', text, (c) => c.notNull())
    .addColumn('uploaded_at', text)
    .addColumn('verified_at', text)
    .execute();
  await db.schema.createIndex('uploads_user_id').on('uploads').column('user_id').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('uploads').execute();
  await db.schema.dropTable('api_keys').execute();
  await db.schema.dropTable('users').execute();
}
