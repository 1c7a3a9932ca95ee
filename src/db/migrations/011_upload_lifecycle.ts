import { sql, type Kysely } from 'kysely';
import { textType } from '../dialect.js';

/**
 * The upload lifecycle (issue 15, docs/lifecycle.md): states stored as facts, the
 * references of every generation, and the indexes of the cleanup job
 * (src/domain/lifecycle/cleanup.ts).
 *
 * - uploads: `expired_at` (a pending upload whose URL lapsed with nothing stored,
 *   or a multipart upload whose lifetime ended), `delete_marked_at` (state
 *   `deleting`: about to lose its object), `deleted_at` and `deleted_reason`
 *   (`unused` | `used` | `missing`: why it went; state `deleted`, the row kept for
 *   audit), and `last_used_at` (when a generation last named it; null: never used),
 *   which Generations.create writes under the row's lock.
 * - generations: `video_delete_marked_at`, `video_deleted_at`: the video's removal
 *   by the retention policy (the row stays; from the mark on, `video_url` is null).
 * - `generation_references (generation_id, s3_key)`: which uploads each generation
 *   names, written with the generation; `(s3_key, generation_id)` finds a key's
 *   generations. Backfilled here from `generations.params` (`references[].key`).
 * - `leases (name, holder, expires_at)`: one cleanup runner at a time.
 *
 * Indexes, each one range per cleanup query (test/db/lifecycle-plans.test.ts):
 * - `uploads_state_expiry (state, expires_at)`: lapsed pending uploads, and the
 *   `deleting` rows a crash left;
 * - `uploads_unused_retention (state, uploaded_at) WHERE last_used_at IS NULL`:
 *   unused uploads past their retention, oldest first;
 * - `uploads_used_retention (state, last_used_at) WHERE last_used_at IS NOT NULL`:
 *   used references whose last use is past the retention;
 * - `generations_video_retention (status, completed_at) WHERE video_delete_marked_at IS NULL`:
 *   videos past their retention;
 * - `generations_video_deleting (video_delete_marked_at) WHERE video_deleted_at IS NULL`:
 *   marked videos a crash left.
 *
 * Stored rows of `uploaded`/`verified` uploads without `uploaded_at` (none are
 * written so since issue 6, but older databases may hold some) get
 * `coalesce(verified_at, created_at)`, so the retention's clock is one column.
 */
export async function up(db: Kysely<any>): Promise<void> {
  const text = textType(db);
  for (const column of ['expired_at', 'delete_marked_at', 'deleted_at', 'deleted_reason', 'last_used_at']) {
    await db.schema.alterTable('uploads').addColumn(column, text).execute();
  }
  for (const column of ['video_delete_marked_at', 'video_deleted_at']) {
    await db.schema.alterTable('generations').addColumn(column, text).execute();
  }
  await db.schema
    .createTable('generation_references')
    .addColumn('generation_id', text, (c) => c.notNull().references('generations.id').onDelete('cascade'))
    .addColumn('s3_key', text, (c) => c.notNull())
    .addPrimaryKeyConstraint('generation_references_pkey', ['generation_id', 's3_key'])
    .execute();
  await db.schema.createIndex('generation_references_key').on('generation_references').columns(['s3_key', 'generation_id']).execute();
  await db.schema
    .createTable('leases')
    .addColumn('name', text, (c) => c.primaryKey())
    .addColumn('holder', text, (c) => c.notNull())
    .addColumn('expires_at', text, (c) => c.notNull())
    .execute();

  await db
    .updateTable('uploads')
    .set({ uploaded_at: sql`coalesce(verified_at, created_at)` })
    .where('state', 'in', ['uploaded', 'verified'])
    .where('uploaded_at', 'is', null)
    .execute();
  await backfillReferences(db);

  await db.schema.createIndex('uploads_state_expiry').on('uploads').columns(['state', 'expires_at']).execute();
  await db.schema
    .createIndex('uploads_unused_retention')
    .on('uploads')
    .columns(['state', 'uploaded_at'])
    .where(sql.ref('last_used_at'), 'is', null)
    .execute();
  await db.schema
    .createIndex('uploads_used_retention')
    .on('uploads')
    .columns(['state', 'last_used_at'])
    .where(sql.ref('last_used_at'), 'is not', null)
    .execute();
  await db.schema
    .createIndex('generations_video_retention')
    .on('generations')
    .columns(['status', 'completed_at'])
    .where(sql.ref('video_delete_marked_at'), 'is', null)
    .execute();
  await db.schema
    .createIndex('generations_video_deleting')
    .on('generations')
    .columns(['video_delete_marked_at'])
    .where(sql.ref('video_deleted_at'), 'is', null)
    .execute();
}

/** Generations read per batch of the backfill. */
const BACKFILL_BATCH = 500;

/**
 * generation_references from every generation's params, in id order and batches;
 * each upload named gets `last_used_at`, its latest generation's `created_at`.
 */
async function backfillReferences(db: Kysely<any>): Promise<void> {
  const lastUse = new Map<string, string>();
  let after = '';
  for (;;) {
    const rows: { id: string; params: string; created_at: string }[] = await db
      .selectFrom('generations')
      .select(['id', 'params', 'created_at'])
      .where('id', '>', after)
      .orderBy('id')
      .limit(BACKFILL_BATCH)
      .execute();
    if (rows.length === 0) break;
    const references: { generation_id: string; s3_key: string }[] = [];
    for (const row of rows) {
      for (const key of referenceKeysOf(row.params)) {
        references.push({ generation_id: row.id, s3_key: key });
        const seen = lastUse.get(key);
        if (seen === undefined || seen < row.created_at) lastUse.set(key, row.created_at);
      }
    }
    if (references.length > 0) {
      await db
        .insertInto('generation_references')
        .values(references)
        .onConflict((oc) => oc.columns(['generation_id', 's3_key']).doNothing())
        .execute();
    }
    after = rows[rows.length - 1]!.id;
  }
  for (const [key, at] of lastUse) {
    await db.updateTable('uploads').set({ last_used_at: at }).where('s3_key', '=', key).execute();
  }
}

/** The distinct `references[].key` of a generation's stored params (GenerationParams); none when unreadable. */
function referenceKeysOf(params: string): string[] {
  try {
    const parsed = JSON.parse(params) as { references?: { key?: unknown }[] };
    const keys = (parsed.references ?? []).map((r) => r.key).filter((k): k is string => typeof k === 'string');
    return [...new Set(keys)];
  } catch {
    return [];
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const index of ['generations_video_deleting', 'generations_video_retention', 'uploads_used_retention', 'uploads_unused_retention', 'uploads_state_expiry']) {
    await db.schema.dropIndex(index).execute();
  }
  await db.schema.dropTable('leases').execute();
  await db.schema.dropTable('generation_references').execute();
  for (const column of ['video_deleted_at', 'video_delete_marked_at']) {
    await db.schema.alterTable('generations').dropColumn(column).execute();
  }
  for (const column of ['last_used_at', 'deleted_reason', 'deleted_at', 'delete_marked_at', 'expired_at']) {
    await db.schema.alterTable('uploads').dropColumn(column).execute();
  }
}
