import type { Db } from '../../db/database.js';

/**
 * A named lease in the `leases` table (migration 011): one holder at a time, until it
 * expires or its holder releases it. Taking it is one conditional UPDATE (free, lapsed,
 * or already ours), else an INSERT that does nothing when another process inserted the
 * row first: on SQLite and PostgreSQL alike, of any number of processes trying at once,
 * exactly one gets it.
 */
export async function takeLease(db: Db, name: string, holder: string, now: Date, ttlMs: number): Promise<boolean> {
  const at = now.toISOString();
  const expiresAt = new Date(now.getTime() + ttlMs).toISOString();
  const renewed = await db
    .updateTable('leases')
    .set({ holder, expires_at: expiresAt })
    .where('name', '=', name)
    .where((eb) => eb.or([eb('expires_at', '<', at), eb('holder', '=', holder)]))
    .executeTakeFirst();
  if (renewed.numUpdatedRows === 1n) return true;
  const inserted = await db
    .insertInto('leases')
    .values({ name, holder, expires_at: expiresAt })
    .onConflict((oc) => oc.column('name').doNothing())
    .returning('name')
    .executeTakeFirst();
  return inserted !== undefined;
}

/** Gives the lease back, if `holder` still holds it. */
export async function releaseLease(db: Db, name: string, holder: string): Promise<void> {
  await db.deleteFrom('leases').where('name', '=', name).where('holder', '=', holder).execute();
}
