import type { Insertable } from 'kysely';
import type { Db } from './database.js';
import type { Database } from './schema.js';

/**
 * Rows per INSERT statement inside one batch: keeps every statement well under
 * the bound-parameter limits of SQLite (32 766) and PostgreSQL (65 535).
 */
const ROWS_PER_STATEMENT = 100;

interface Waiting<Row> {
  row: Row;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Inserts rows into one table in batches: every row handed over during the same
 * event-loop turn is written by one transaction after that turn, so a burst of
 * requests pays for one commit instead of one each (the commit, not the insert,
 * is what a row costs in SQLite).
 *
 * `insert()` resolves only once the transaction holding its row has committed,
 * so a caller that waits for it never acknowledges a row that could be lost.
 * When the transaction fails, every row of that batch is rolled back and every
 * caller of that batch gets the transaction's error; other batches are unaffected.
 * Only Kysely's portable API is used, so this holds for any dialect.
 */
export class BatchedInsert<Table extends keyof Database & string> {
  private pending: Waiting<Insertable<Database[Table]>>[] = [];

  constructor(
    private readonly db: Db,
    private readonly table: Table,
  ) {}

  /** Resolves when `row` is committed; rejects with the error of its batch's transaction. */
  insert(row: Insertable<Database[Table]>): Promise<void> {
    return new Promise((resolve, reject) => {
      // setImmediate runs after the I/O callbacks of this turn, so requests parsed together share a batch.
      if (this.pending.length === 0) setImmediate(() => void this.flush());
      this.pending.push({ row, resolve, reject });
    });
  }

  private async flush(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    try {
      await this.db.transaction().execute(async (trx) => {
        for (let i = 0; i < batch.length; i += ROWS_PER_STATEMENT) {
          const rows = batch.slice(i, i + ROWS_PER_STATEMENT).map((w) => w.row);
          // The generic table name defeats Kysely's per-table typing; the rows are typed by `insert()`.
          await trx.insertInto(this.table as keyof Database).values(rows as never).execute();
        }
      });
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    for (const w of batch) w.resolve();
  }
}
