import type { CompiledQuery, Insertable } from 'kysely';
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
  /** Columns every row names, in the order of the first row handed over. */
  private columns: string[] | null = null;
  /** The INSERT for n rows, compiled once per n: compiling cost more than the insert itself. */
  private readonly statements = new Map<number, CompiledQuery>();

  constructor(
    private readonly db: Db,
    private readonly table: Table,
  ) {}

  /**
   * Resolves when `row` is committed; rejects with the error of its batch's
   * transaction. Every row must name the same columns (null for no value).
   */
  insert(row: Insertable<Database[Table]>): Promise<void> {
    this.columns ??= Object.keys(row);
    if (Object.keys(row).length !== this.columns.length || !this.columns.every((c) => c in row)) {
      return Promise.reject(new Error(`every row of a BatchedInsert into ${this.table} must name the columns ${this.columns.join(', ')}`));
    }
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
      const statements: CompiledQuery[] = [];
      for (let i = 0; i < batch.length; i += ROWS_PER_STATEMENT) {
        statements.push(this.statementFor(batch.slice(i, i + ROWS_PER_STATEMENT).map((w) => w.row as Record<string, unknown>)));
      }
      if (statements.length === 1) {
        // One statement is atomic on its own: BEGIN and COMMIT around it would only add two round trips.
        await this.db.executeQuery(statements[0]!);
      } else {
        await this.db.transaction().execute(async (trx) => {
          for (const statement of statements) await trx.executeQuery(statement);
        });
      }
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    for (const w of batch) w.resolve();
  }

  /** The compiled INSERT of `rows`: the cached statement for their count, with their values. */
  private statementFor(rows: Record<string, unknown>[]): CompiledQuery {
    const columns = this.columns!;
    const parameters = rows.flatMap((row) => columns.map((c) => row[c]));
    let statement = this.statements.get(rows.length);
    if (!statement) {
      // The generic table name defeats Kysely's per-table typing; the rows are typed by `insert()`.
      statement = this.db.insertInto(this.table as keyof Database).values(rows as never).compile();
      // Reusing the SQL relies on Kysely binding values row by row in column order; hold it to that.
      if (JSON.stringify(statement.parameters) !== JSON.stringify(parameters)) {
        throw new Error(`BatchedInsert: Kysely bound the values of ${this.table} in another order than expected`);
      }
      this.statements.set(rows.length, statement);
    }
    return { ...statement, parameters };
  }
}
