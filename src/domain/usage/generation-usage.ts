import { sql, type Transaction } from 'kysely';
import { dialectOf, type Db } from '../../db/database.js';
import type { Database } from '../../db/schema.js';
import { rateLimited } from '../errors.js';

export const HOUR_MS = 3_600_000;

/** A user's generations against their limits. */
export interface GenerationUsage {
  /** Queued or running (`status = 'generating'`). */
  active: number;
  /** Created in the hour before `now`, whatever became of them. */
  lastHour: number;
}

/** Two counts over index ranges of one user's rows (migration 005): bounded by the limits themselves. */
export async function readGenerationUsage(db: Db | Transaction<Database>, userId: string, now: Date): Promise<GenerationUsage> {
  const active = await db
    .selectFrom('generations')
    .select(sql<number>`count(*)`.as('n'))
    .where('user_id', '=', userId)
    .where('status', '=', 'generating')
    .executeTakeFirstOrThrow();
  const lastHour = await db
    .selectFrom('generations')
    .select(sql<number>`count(*)`.as('n'))
    .where('user_id', '=', userId)
    .where('created_at', '>', new Date(now.getTime() - HOUR_MS).toISOString())
    .executeTakeFirstOrThrow();
  return { active: Number(active.n), lastHour: Number(lastHour.n) };
}

export interface GenerationLimitValues {
  /** Queued + running generations per user. */
  activeGenerations: number;
  /** Generations created per user in any hour. */
  generationsPerHour: number;
}

/**
 * Per-user limits of Create Generation: at most `activeGenerations` queued or
 * running, at most `generationsPerHour` created in the last hour. A request
 * whose `count` would pass either is refused whole (429 `rate_limited`).
 *
 * The check and the insert run in one transaction that first locks the
 * user's row (`users`), so two concurrent creates of one user cannot both take
 * the last slot, whichever API nodes they reach: on PostgreSQL a `SELECT … FOR
 * UPDATE` of that row, which holds until the commit, on SQLite a no-op UPDATE
 * of it, which takes the database's write lock (every SQLite writer, in any
 * process, waits for it). A per-user chain in this process in front of the
 * transaction keeps one node's concurrent creates of a user from queueing on
 * the row lock, each holding a pooled connection while it waits.
 */
export class GenerationLimits {
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    private readonly db: Db,
    private readonly limits: GenerationLimitValues,
  ) {}

  /**
   * Runs `insert` (in the transaction it is given) once `count` more generations fit the user's limits; throws
   * 429 otherwise. `busyRetrySeconds` is the Retry-After of a refusal for too
   * many active ones (when one of them may have finished: the model's typical latency).
   */
  async admit<T>(userId: string, count: number, busyRetrySeconds: number, insert: (trx: Transaction<Database>) => Promise<T>): Promise<T> {
    const previous = this.locks.get(userId) ?? Promise.resolve();
    const turn = previous.then(() =>
      this.db.transaction().execute(async (trx) => {
        await lockUser(trx, userId);
        await this.check(trx, userId, count, busyRetrySeconds);
        return insert(trx);
      }),
    );
    const settled = turn.then(
      () => undefined,
      () => undefined,
    );
    this.locks.set(userId, settled);
    void settled.then(() => {
      if (this.locks.get(userId) === settled) this.locks.delete(userId);
    });
    return turn;
  }

  private async check(trx: Transaction<Database>, userId: string, count: number, busyRetrySeconds: number): Promise<void> {
    const now = new Date();
    const usage = await readGenerationUsage(trx, userId, now);
    const { activeGenerations, generationsPerHour } = this.limits;
    if (usage.active + count > activeGenerations) {
      throw rateLimited(
        `Too many generations in progress: ${usage.active} queued or running, ${count} more asked (limit ${activeGenerations} per user)`,
        busyRetrySeconds,
      );
    }
    if (usage.lastHour + count > generationsPerHour) {
      throw rateLimited(
        `Too many generations: ${usage.lastHour} created in the last hour, ${count} more asked (limit ${generationsPerHour} per hour per user)`,
        await this.secondsUntilRoom(trx, userId, now, usage.lastHour + count - generationsPerHour),
      );
    }
  }

  /** Seconds until `leaving` generations of the window have left it: when the `leaving`-th oldest turns an hour old. */
  private async secondsUntilRoom(trx: Transaction<Database>, userId: string, now: Date, leaving: number): Promise<number> {
    const row = await trx
      .selectFrom('generations')
      .select('created_at')
      .where('user_id', '=', userId)
      .where('created_at', '>', new Date(now.getTime() - HOUR_MS).toISOString())
      .orderBy('created_at')
      .limit(1)
      .offset(leaving - 1)
      .executeTakeFirst();
    // No such row: the request asks for more than an hour allows at all.
    if (!row) return HOUR_MS / 1000;
    return (Date.parse(row.created_at) + HOUR_MS - now.getTime()) / 1000;
  }
}

/** Serialises the user's admissions across processes until the transaction ends (see GenerationLimits). */
async function lockUser(trx: Transaction<Database>, userId: string): Promise<void> {
  if (dialectOf(trx) === 'postgres') await trx.selectFrom('users').select('id').where('id', '=', userId).forUpdate().execute();
  else await trx.updateTable('users').set({ id: sql.ref('id') }).where('id', '=', userId).execute();
}
