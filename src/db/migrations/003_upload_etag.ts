import type { Kysely } from 'kysely';

/** The ETag of the bytes that were verified, so a later replacement of the object is noticed. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('uploads').addColumn('etag', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('uploads').dropColumn('etag').execute();
}
