import type { Transaction } from 'kysely';
import type { Database } from '../../db/schema.js';

/** What a generation names: a field and the upload key in it. */
export interface NamedReference {
  field: string;
  key: string;
}

/**
 * Inside the transaction that inserts a generation (Generations.create): takes the row lock
 * of every upload it names and checks, in a statement of its own (a fresh snapshot on
 * PostgreSQL READ COMMITTED), that each is still `verified`, writing its `last_used_at`.
 * One UPDATE does both: it waits for a cleanup run's mark transaction that holds the row
 * (src/domain/lifecycle/marks.ts) and then sees its outcome. So either this commits first
 * and the mark, once it has the lock, sees the generation's references and skips the
 * upload; or the mark commits first and this finds the row `deleting`: the same 404 as a
 * missing key. Keys are locked in one order, so two creates never wait on each other in a
 * cycle. Returns the field of the first upload that is no longer verified (the caller answers
 * it as a missing key and rolls back), else null.
 */
export async function claimReferences(trx: Transaction<Database>, userId: string, references: NamedReference[], at: string): Promise<string | null> {
  const byKey = new Map<string, string>();
  for (const { field, key } of references) if (!byKey.has(key)) byKey.set(key, field);
  for (const key of [...byKey.keys()].sort()) {
    const claimed = await trx
      .updateTable('uploads')
      .set({ last_used_at: at })
      .where('s3_key', '=', key)
      .where('user_id', '=', userId)
      .where('state', '=', 'verified')
      .executeTakeFirst();
    if (claimed.numUpdatedRows !== 1n) return byKey.get(key)!;
  }
  return null;
}

/** The generation_references rows of generations that all name `references` (written in the same transaction). */
export async function insertReferences(trx: Transaction<Database>, generationIds: string[], references: NamedReference[]): Promise<void> {
  const keys = [...new Set(references.map((r) => r.key))];
  if (keys.length === 0) return;
  await trx
    .insertInto('generation_references')
    .values(generationIds.flatMap((generation_id) => keys.map((s3_key) => ({ generation_id, s3_key }))))
    .execute();
}
