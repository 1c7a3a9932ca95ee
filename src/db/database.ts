import fs from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect, type Migration, type MigrationProvider, type SqliteDatabase } from 'kysely';
import type { Database } from './schema.js';
import * as m001 from './migrations/001_initial.js';
import * as m002 from './migrations/002_generations.js';
import * as m003 from './migrations/003_upload_etag.js';
import * as m004 from './migrations/004_upload_media.js';
import * as m005 from './migrations/005_usage_indexes.js';

export type Db = Kysely<Database>;

/** Versioned migrations, in order; a new one is a new file added here. */
const MIGRATIONS: Record<string, Migration> = {
  '001_initial': m001,
  '002_generations': m002,
  '003_upload_etag': m003,
  '004_upload_media': m004,
  '005_usage_indexes': m005,
};

const provider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

/** Opens (creating if needed) the embedded SQLite database in `dataDir` and brings its schema up to date. */
export async function openDatabase(dataDir: string): Promise<Db> {
  // The database holds webhook secrets and key hashes: the data dir and the file are the owner's
  // alone, whatever the umask (SQLite gives its -wal and -shm files the database file's mode).
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dataDir, 0o700);
  const file = path.join(dataDir, 'keyframe.sqlite');
  fs.closeSync(fs.openSync(file, 'a', 0o600));
  fs.chmodSync(file, 0o600);
  const sqlite = new SQLite(file);
  // WAL lets the CLI and the server share the file; NORMAL sync is durable across process crashes.
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('busy_timeout = 5000');
  sqlite.pragma('foreign_keys = ON');
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
  const dataVersion = sqlite.prepare('PRAGMA data_version').pluck();
  externalWriteVersions.set(db, () => dataVersion.get() as number);
  await migrate(db);
  return db;
}

const externalWriteVersions = new WeakMap<Db, () => number>();

/**
 * For caches of rows that someone else may change: a function returning a
 * number that changes whenever another connection (the CLI, another server on
 * the same file) has committed since its last call. Writes made through `db`
 * itself do not change it. Costs one PRAGMA read, no table access.
 */
export function externalWriteVersion(db: Db): () => number {
  const version = externalWriteVersions.get(db);
  if (!version) throw new Error('externalWriteVersion needs a database opened by openDatabase');
  return version;
}

async function migrate(db: Db): Promise<void> {
  const { error } = await new Migrator({ db, provider }).migrateToLatest();
  if (error) throw error;
}

/** Distinct statements kept prepared; the app runs a few dozen, batched inserts up to a hundred more. */
const STATEMENT_CACHE_SIZE = 512;

/**
 * Kysely's SQLite driver prepares every query it runs, and preparing (SQLite
 * compiling the SQL) cost as much as running the hot statements. A prepared
 * statement can be run again with other parameters, so keep them by SQL text.
 * Kysely runs one query at a time on its single connection, so a statement is
 * never reused while it is still iterating.
 */
function withStatementCache(sqlite: SQLite.Database): SqliteDatabase {
  const statements = new Map<string, SQLite.Statement>();
  return {
    close: () => sqlite.close(),
    prepare(sql) {
      let statement = statements.get(sql);
      if (statement === undefined) {
        statement = sqlite.prepare(sql);
        if (statements.size >= STATEMENT_CACHE_SIZE) statements.delete(statements.keys().next().value!);
        statements.set(sql, statement);
      }
      return statement;
    },
  };
}
