import { sql, type Transaction } from 'kysely';
import { dialectOf, type Db } from '../../db/database.js';
import type { Database, DeletedReason, UploadsTable } from '../../db/schema.js';

/**
 * The three steps of every deletion (docs/lifecycle.md): MARK the record (it stops being
 * live), delete the object, FINALISE the record. A crash after the mark leaves a record
 * that no generation can pick (answered `deleted`) whose object may remain: the next run
 * resumes it. No order leaves a live record without its object.
 */

/**
 * Marks an upload `deleting` with `reason`, when it is still eligible. In one transaction
 * that first takes the upload row's lock (PostgreSQL: SELECT … FOR UPDATE; SQLite: a no-op
 * UPDATE, which takes the database's write lock), then, in statements of their own (fresh
 * snapshots), reads the row, asks `eligible`, and checks that no queued or running
 * generation names the key. Generations.create locks the same row before it inserts a
 * generation naming it (src/domain/lifecycle/references.ts), so either that generation is
 * seen here, or it finds the row `deleting` and answers 404. True when this marked it.
 */
export async function markUploadDeleting(
  db: Db,
  key: string,
  reason: DeletedReason,
  now: Date,
  eligible: (trx: Transaction<Database>, row: UploadsTable) => Promise<boolean> | boolean,
): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    if (dialectOf(trx) === 'postgres') await trx.selectFrom('uploads').select('s3_key').where('s3_key', '=', key).forUpdate().execute();
    else await trx.updateTable('uploads').set({ s3_key: sql.ref('s3_key') }).where('s3_key', '=', key).execute();
    const row = await trx.selectFrom('uploads').selectAll().where('s3_key', '=', key).executeTakeFirst();
    if (!row || (row.state !== 'uploaded' && row.state !== 'verified')) return false;
    if (!(await eligible(trx, row))) return false;
    if (await inUse(trx, key)) return false;
    const marked = await trx
      .updateTable('uploads')
      .set({ state: 'deleting', delete_marked_at: now.toISOString(), deleted_reason: reason })
      .where('s3_key', '=', key)
      .where('state', '=', row.state)
      .executeTakeFirst();
    return marked.numUpdatedRows === 1n;
  });
}

/** Whether a queued or running generation names the key. */
export async function inUse(db: Db | Transaction<Database>, key: string): Promise<boolean> {
  const active = await db
    .selectFrom('generation_references')
    .innerJoin('generations', 'generations.id', 'generation_references.generation_id')
    .select('generations.id')
    .where('generation_references.s3_key', '=', key)
    .where('generations.status', '=', 'generating')
    .limit(1)
    .executeTakeFirst();
  return active !== undefined;
}

/** The last step: the object is gone, the record says so (kept for audit). */
export async function finaliseUploadDeleted(db: Db, key: string, now: Date): Promise<void> {
  await db.updateTable('uploads').set({ state: 'deleted', deleted_at: now.toISOString() }).where('s3_key', '=', key).where('state', '=', 'deleting').execute();
}

/** Marks a completed generation's video for deletion (its status answers `video_url` null from now on); true when this marked it. */
export async function markVideoDeleting(db: Db, generationId: string, now: Date): Promise<boolean> {
  const marked = await db
    .updateTable('generations')
    .set({ video_delete_marked_at: now.toISOString() })
    .where('id', '=', generationId)
    .where('status', '=', 'completed')
    .where('video_delete_marked_at', 'is', null)
    .executeTakeFirst();
  return marked.numUpdatedRows === 1n;
}

export async function finaliseVideoDeleted(db: Db, generationId: string, now: Date): Promise<void> {
  await db
    .updateTable('generations')
    .set({ video_deleted_at: now.toISOString() })
    .where('id', '=', generationId)
    .where('video_delete_marked_at', 'is not', null)
    .where('video_deleted_at', 'is', null)
    .execute();
}
