import { sql, type Kysely } from 'kysely';
import { textType } from '../dialect.js';

/**
 * Leases on running jobs (issue 12), so that several processes can share the
 * database queue (src/queue/in-process-queue.ts):
 *
 * - `worker_id`: the consumer that claimed the job (host, pid and a random part).
 * - `lease_expires_at`: until when that consumer holds it; it renews the lease
 *   while the job runs, and only a job whose lease has lapsed is recovered.
 * - `generations_lease (status, lease_expires_at)`: the recovery sweep is an
 *   index range over running jobs whose lease lapsed (queued jobs have no lease,
 *   and NULL never satisfies `lease_expires_at < ?`).
 *
 * Jobs left running by a process of an earlier version have no lease: they get
 * one that has already lapsed (their `started_at`), so the first sweep recovers
 * them as start-up recovery used to. Stop every older process before migrating.
 */
export async function up(db: Kysely<any>): Promise<void> {
  const text = textType(db);
  await db.schema.alterTable('generations').addColumn('worker_id', text).execute();
  await db.schema.alterTable('generations').addColumn('lease_expires_at', text).execute();
  await db
    .updateTable('generations')
    .set({ lease_expires_at: sql.ref('started_at') })
    .where('status', '=', 'generating')
    .where('started_at', 'is not', null)
    .execute();
  await db.schema.createIndex('generations_lease').on('generations').columns(['status', 'lease_expires_at']).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('generations_lease').execute();
  await db.schema.alterTable('generations').dropColumn('lease_expires_at').execute();
  await db.schema.alterTable('generations').dropColumn('worker_id').execute();
}
