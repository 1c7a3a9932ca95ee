import type { Kysely } from 'kysely';
import { textType } from '../dialect.js';

/**
 * Multipart uploads (issue 13): the store's upload id of an upload made in
 * parts (`POST /api/s3/multipart`), null for a single-PUT upload. The record
 * of a multipart upload is `pending` from create until the server completes
 * it (then `uploaded`, and verification decides), or `rejected` when it is
 * aborted or its parts are refused; `expires_at` is then the upload's
 * lifetime, not one URL's. The status endpoint answers a pending record with
 * an upload id as `uploading`. No index: every lookup is by `s3_key` (the key)
 * and compares the id.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('uploads').addColumn('multipart_upload_id', textType(db)).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('uploads').dropColumn('multipart_upload_id').execute();
}
