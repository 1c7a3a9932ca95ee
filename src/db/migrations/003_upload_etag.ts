import type { Kysely } from 'kysely';
import { textType } from '../dialect.js';

/** The ETag of the bytes that were verified, so a later replacement of the object is noticed. */
export async function up(db: Kysely<unknown>): Promise<void> {
  // Text columns compare byte by byte on both dialects (src/db/dialect.ts).
  const text = textType(db);
  await db.schema.alterTable('uploads').addColumn('etag', text).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('uploads').dropColumn('etag').execute();
}
