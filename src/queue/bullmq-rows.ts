import { sql } from 'kysely';
import type { Db } from '../db/database.js';

/**
 * The statements BullmqQueue (bullmq-queue.ts) runs on the `generations` table. Each is one
 * statement, conditional on the row's state, so that a row and Redis can be out of step
 * without a job ever running for a row that is settled.
 */

/**
 * How many generations of the job's user are queued (generating, not started) and were created
 * before it: its place in that user's backlog, 0 for the user's next job. One count over index
 * `generations_queue` (status, started_at, user_id, created_at); 0 when the row does not exist.
 */
export async function queuedAhead(db: Db, jobId: string): Promise<number> {
  const row = await db
    .selectFrom('generations')
    .select(sql<number | string>`count(*)`.as('n'))
    .where('status', '=', 'generating')
    .where('started_at', 'is', null)
    .where('user_id', '=', db.selectFrom('generations as j').select('j.user_id').where('j.id', '=', jobId))
    .where('created_at', '<', db.selectFrom('generations as j').select('j.created_at').where('j.id', '=', jobId))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Marks a queued or stalled row running under `workerId`; false when the row is settled or gone. */
export async function markRunning(db: Db, jobId: string, workerId: string): Promise<boolean> {
  const result = await db
    .updateTable('generations')
    .set((eb) => ({ started_at: new Date().toISOString(), attempts: eb('attempts', '+', 1), worker_id: workerId, lease_expires_at: null }))
    .where('id', '=', jobId)
    .where('status', '=', 'generating')
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Queues a row this consumer started again, not counting the start; a row another consumer took since is left alone. */
export async function handBackRow(db: Db, jobId: string, workerId: string): Promise<void> {
  await db
    .updateTable('generations')
    .set((eb) => ({ started_at: null, worker_id: null, attempts: eb('attempts', '-', 1) }))
    .where('id', '=', jobId)
    .where('worker_id', '=', workerId)
    .where('status', '=', 'generating')
    .execute();
}

/** Where a reconcile pass stopped: the last row it looked at. */
export interface RowCursor {
  id: string;
  created_at: string;
}

/** Unsettled rows created before `cutoff`, oldest first, after `cursor` (from the oldest when null), at most `limit`. */
export function unsettledRows(db: Db, cutoff: string, cursor: RowCursor | null, limit: number): Promise<RowCursor[]> {
  let query = db
    .selectFrom('generations')
    .select(['id', 'created_at'])
    .where('status', '=', 'generating')
    .where('created_at', '<', cutoff);
  if (cursor) {
    query = query.where((eb) =>
      eb.or([eb('created_at', '>', cursor.created_at), eb.and([eb('created_at', '=', cursor.created_at), eb('id', '>', cursor.id)])]),
    );
  }
  return query.orderBy('created_at').orderBy('id').limit(limit).execute();
}
