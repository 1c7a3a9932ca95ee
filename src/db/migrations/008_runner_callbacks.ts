import type { Kysely } from 'kysely';
import { textType } from '../dialect.js';

/**
 * The `http` runner's pending completion callbacks (issue 12), so that the
 * callback of a job run by any worker can arrive at any API node. One row per
 * running job (a new run replaces it):
 *
 * - `run_id`: the run the model worker was handed; the callback secret is
 *   derived from the signing secret, the generation id and this id, so it is
 *   never stored;
 * - `secret_sha256`: SHA-256 of that secret, hex, so a node that derives a
 *   different secret (a different signing secret) says so instead of refusing
 *   every signature in silence;
 * - `outcome`: null while waiting; the accepted callback's outcome as JSON
 *   (`{"ok":true}` or `{"ok":false,"error":"…"}`), written once: the secret is single-use.
 */
export async function up(db: Kysely<any>): Promise<void> {
  const text = textType(db);
  await db.schema
    .createTable('runner_callbacks')
    .addColumn('generation_id', text, (c) => c.primaryKey().references('generations.id'))
    .addColumn('run_id', text, (c) => c.notNull())
    .addColumn('secret_sha256', text, (c) => c.notNull())
    .addColumn('outcome', text)
    .addColumn('created_at', text, (c) => c.notNull())
    .addColumn('settled_at', text)
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('runner_callbacks').execute();
}
