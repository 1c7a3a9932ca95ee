import type { Db } from '../../db/database.js';

/**
 * Generations waiting for a worker (`generating`, not started) and running (`generating`,
 * started): one COUNT over the `generating` rows, read through the index on
 * (status, started_at, …) (`generations_queue`, migration 005). For the queue depth gauge.
 */
export async function queueDepth(db: Db): Promise<{ queued: number; running: number }> {
  const row = await db
    .selectFrom('generations')
    .select((eb) => [eb.fn.countAll<number | string>().as('generating'), eb.fn.count<number | string>('started_at').as('running')])
    .where('status', '=', 'generating')
    .executeTakeFirstOrThrow();
  // PostgreSQL answers a count as a bigint string.
  const generating = Number(row.generating);
  const running = Number(row.running);
  return { queued: generating - running, running };
}
