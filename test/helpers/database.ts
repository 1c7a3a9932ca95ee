import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { promisify } from 'node:util';
import pg from 'pg';
import { openDatabase, type Db } from '../../src/db/database.js';

/**
 * The dialect matrix (vitest.config.ts): the `sqlite` project runs every test
 * on the embedded SQLite, the `postgres` project runs every test that touches
 * the database again with KEYFRAME_TEST_DATABASE=postgres. Tests never pick a
 * dialect themselves: they ask `testDatabase()` for a fresh database of the
 * project's dialect, and use the helpers below where SQL must differ.
 */
export type TestDialect = 'sqlite' | 'postgres';

/** The dialect of the running vitest project. */
export const TEST_DIALECT: TestDialect = process.env.KEYFRAME_TEST_DATABASE === 'postgres' ? 'postgres' : 'sqlite';

/** The maintenance database the test databases are created from (trust auth, user postgres). */
export const POSTGRES_ADMIN_URL = process.env.KEYFRAME_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

/** What starts PostgreSQL on the developer and CI machines (named in every "PostgreSQL missing" message). */
export const POSTGRES_START_COMMAND = 'pg_ctlcluster 15 main start (as root; or: service postgresql start)';

/** Pool size of the databases the tests open themselves (the server uses its configured default). */
const TEST_POOL_SIZE = 4;

export interface TestDatabase {
  dialect: TestDialect;
  /** A fresh temp dir: the SQLite file on sqlite; on both, what else a server keeps there (disk objects, signing secret, scratch). */
  dataDir: string;
  /** On postgres, the URL of this test's own database (no password: trust auth). */
  url: string | undefined;
  /** Server / CLI environment for this database: KEYFRAME_DATA_DIR, plus KEYFRAME_DATABASE_URL on postgres. */
  env: Record<string, string>;
  /** Opens the database (migrated unless `migrate: false`); closed by the caller, or at `dispose` at the latest. */
  open(options?: { migrate?: boolean }): Promise<Db>;
  /** Brings the schema up to date and closes again (for tests that then run the CLI, which does not migrate). */
  migrate(): Promise<void>;
  /**
   * Another connection to the same database, for reading what has been
   * committed: what the code under test's own connection has in a transaction
   * not yet committed is invisible to it. Same types as the app's (opened by
   * openDatabase), never migrating.
   */
  secondConnection(): Promise<Db>;
  /** Closes what `open`/`secondConnection` opened, removes the data dir, and on postgres drops the database. */
  dispose(): Promise<void>;
}

/**
 * A fresh, empty database of the project's dialect for one test file, one test
 * or one server: on sqlite a new temp data dir, on postgres a new database
 * `kf_test_<pid>_<random>` created as user postgres, dropped (WITH (FORCE), so
 * that a connection left open cannot keep it) on `dispose`.
 */
export async function testDatabase(purpose = 'test'): Promise<TestDatabase> {
  const dataDir = await mkdtemp(path.join(tmpdir(), `keyframe-${purpose}-`));
  const opened = new Set<Db>();
  const track = (db: Db): Db => {
    opened.add(db);
    const destroy = db.destroy.bind(db);
    db.destroy = async () => {
      opened.delete(db);
      await destroy();
    };
    return db;
  };

  if (TEST_DIALECT === 'sqlite') {
    const open = async (options: { migrate?: boolean } = {}) => track(await openDatabase(dataDir, { migrate: options.migrate ?? true }));
    return {
      dialect: 'sqlite',
      dataDir,
      url: undefined,
      env: { KEYFRAME_DATA_DIR: dataDir },
      open,
      migrate: async () => (await open()).destroy(),
      secondConnection: () => open({ migrate: false }),
      async dispose() {
        await Promise.allSettled([...opened].map((db) => db.destroy()));
        await rm(dataDir, { recursive: true, force: true, maxRetries: 5 });
      },
    };
  }

  const name = `kf_test_${process.pid}_${randomBytes(6).toString('hex')}`;
  try {
    await admin((client) => client.query(`CREATE DATABASE ${name}`));
  } catch (err) {
    await rm(dataDir, { recursive: true, force: true });
    throw postgresUnavailable(err);
  }
  const url = databaseUrl(name);
  const open = async (options: { migrate?: boolean } = {}) =>
    track(await openDatabase({ dialect: 'postgres', url, poolSize: TEST_POOL_SIZE }, { migrate: options.migrate ?? true }));
  return {
    dialect: 'postgres',
    dataDir,
    url,
    env: { KEYFRAME_DATA_DIR: dataDir, KEYFRAME_DATABASE_URL: url },
    open,
    migrate: async () => (await open()).destroy(),
    secondConnection: () => open({ migrate: false }),
    async dispose() {
      await Promise.allSettled([...opened].map((db) => db.destroy()));
      try {
        await admin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
      } finally {
        await rm(dataDir, { recursive: true, force: true, maxRetries: 5 });
      }
    },
  };
}

/** The URL of database `name` on the test server (the admin URL with another path). */
function databaseUrl(name: string): string {
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

async function admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 5000 });
  // An error on an idle client (the server going away) must not become an uncaught exception.
  client.on('error', () => {});
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => {});
  }
}

function postgresUnavailable(err: unknown): Error {
  const where = new URL(POSTGRES_ADMIN_URL);
  return new Error(
    `cannot create a test database on PostgreSQL at ${where.hostname}:${where.port || 5432} as ${where.username || 'postgres'} ` +
      `(${(err as Error).message}). The postgres test project needs it; start it with: ${POSTGRES_START_COMMAND}`,
    { cause: err },
  );
}

/**
 * Everything the database has stored, as bytes, for tests that a secret is
 * nowhere in it: on SQLite the database file and its write-ahead log, on
 * PostgreSQL a `pg_dump` of the whole database (every row of every table).
 */
export async function storedBytes(database: TestDatabase): Promise<{ name: string; bytes: Buffer }[]> {
  if (database.dialect === 'sqlite') {
    const files = ['keyframe.sqlite', 'keyframe.sqlite-wal'].map((f) => path.join(database.dataDir, f)).filter((f) => existsSync(f));
    return Promise.all(files.map(async (f) => ({ name: path.basename(f), bytes: await readFile(f) })));
  }
  const { stdout } = await promisify(execFile)('pg_dump', ['--no-owner', '--dbname', database.url!], { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024 });
  if (stdout.length === 0) throw new Error('pg_dump printed nothing');
  return [{ name: 'pg_dump', bytes: stdout }];
}

// ---- Dialect-specific SQL the tests need --------------------------------------------------------

export interface InsertRefusal {
  /** Table whose inserts fail. */
  table: string;
  /** The error message the database raises (it must not contain `$kf$`). */
  message: string;
  /** Only rows whose `column` equals `equals` fail; without it, every insert fails. */
  when?: { column: string; equals: string };
}

/**
 * Makes inserts into `table` fail inside the database itself (a real failure of
 * the real database, not a mock): a trigger raising `message`, on SQLite
 * `RAISE(ABORT, …)`, on PostgreSQL a plpgsql function raising an exception.
 * Returns the function that removes it again.
 */
export async function refuseInserts(db: Db, refusal: InsertRefusal, dialect: TestDialect = TEST_DIALECT): Promise<() => Promise<void>> {
  const name = sql.id(`kf_refuse_${randomBytes(4).toString('hex')}`);
  const table = sql.id(refusal.table);
  const message = sql.lit(refusal.message);
  const condition = refusal.when ? sql`NEW.${sql.id(refusal.when.column)} = ${sql.lit(refusal.when.equals)}` : undefined;
  if (dialect === 'sqlite') {
    const when = condition ? sql`WHEN ${condition}` : sql``;
    await sql`CREATE TRIGGER ${name} BEFORE INSERT ON ${table} ${when} BEGIN SELECT RAISE(ABORT, ${message}); END`.execute(db);
    return async () => {
      await sql`DROP TRIGGER IF EXISTS ${name}`.execute(db);
    };
  }
  if (refusal.message.includes('$kf$')) throw new Error('refuseInserts: the message may not contain $kf$');
  await sql`CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $kf$
    BEGIN RAISE EXCEPTION USING MESSAGE = ${message}; END $kf$`.execute(db);
  const when = condition ? sql`WHEN (${condition})` : sql``;
  await sql`CREATE TRIGGER ${name} BEFORE INSERT ON ${table} FOR EACH ROW ${when} EXECUTE FUNCTION ${name}()`.execute(db);
  return async () => {
    await sql`DROP TRIGGER IF EXISTS ${name} ON ${table}`.execute(db);
    await sql`DROP FUNCTION IF EXISTS ${name}()`.execute(db);
  };
}
