import fs from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import {
  Kysely,
  Migrator,
  PostgresDialect,
  SqliteDialect,
  type Migration,
  type MigrationProvider,
  type SqliteDatabase,
} from 'kysely';
import type { Config } from '../config.js';
import type { Database } from './schema.js';
import { openPool } from './postgres.js';
import { openPostgresChangeFeed, registerChangeFeed, sqliteChangeFeed } from './change-feed.js';
import * as m001 from './migrations/001_initial.js';
import * as m002 from './migrations/002_generations.js';
import * as m003 from './migrations/003_upload_etag.js';
import * as m004 from './migrations/004_upload_media.js';
import * as m005 from './migrations/005_usage_indexes.js';
import * as m006 from './migrations/006_job_leases.js';
import * as m007 from './migrations/007_webhook_deliveries.js';
import * as m008 from './migrations/008_runner_callbacks.js';
import * as m009 from './migrations/009_multipart_uploads.js';
import * as m010 from './migrations/010_multipart_expiry.js';
import * as m011 from './migrations/011_upload_lifecycle.js';

export { DatabaseUnreachable } from './postgres.js';
export { dialectOf } from './dialect.js';

export type Db = Kysely<Database>;

/** Where the metadata lives: the embedded SQLite file in a data dir, or a PostgreSQL database. */
export type DatabaseTarget = { dialect: 'sqlite'; dataDir: string } | { dialect: 'postgres'; url: string; poolSize: number };

export interface OpenDatabaseOptions {
  /**
   * Apply pending migrations first (serve, `keyframe migrate`, tests). false: throw
   * SchemaBehindError when any is pending (the CLI's other commands). Default true.
   */
  migrate?: boolean;
  /** Told the names of the migrations this open applied, in order (none: an empty list). */
  onMigrated?: (applied: string[]) => void;
}

/** The schema is older than this code and the open was told not to migrate it. */
export class SchemaBehindError extends Error {
  constructor(readonly pending: string[]) {
    super(
      `the database schema is behind this version of Keyframe (${pending.length} migration${pending.length === 1 ? '' : 's'} pending): run \`keyframe migrate\``,
    );
    this.name = 'SchemaBehindError';
  }
}

/** Versioned migrations, in order; a new one is a new file added here. */
const MIGRATIONS: Record<string, Migration> = {
  '001_initial': m001,
  '002_generations': m002,
  '003_upload_etag': m003,
  '004_upload_media': m004,
  '005_usage_indexes': m005,
  '006_job_leases': m006,
  '007_webhook_deliveries': m007,
  '008_runner_callbacks': m008,
  '009_multipart_uploads': m009,
  '010_multipart_expiry': m010,
  '011_upload_lifecycle': m011,
};

const provider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

/** PostgreSQL when `KEYFRAME_DATABASE_URL` is set, else the embedded SQLite in the data dir. */
export function databaseTargetOf(config: Config): DatabaseTarget {
  return config.database.url !== null
    ? { dialect: 'postgres', url: config.database.url, poolSize: config.database.poolSize }
    : { dialect: 'sqlite', dataDir: config.dataDir };
}

/**
 * Opens the database the target names and brings its schema up to date (or,
 * with `migrate: false`, checks that it is). A string is a SQLite data dir.
 * PostgreSQL is connected to once before this resolves: an unreachable one
 * throws DatabaseUnreachable.
 */
export async function openDatabase(target: DatabaseTarget | string, options: OpenDatabaseOptions = {}): Promise<Db> {
  const t: DatabaseTarget = typeof target === 'string' ? { dialect: 'sqlite', dataDir: target } : target;
  const db = t.dialect === 'sqlite' ? openSqlite(t.dataDir) : await openPostgres(t.url, t.poolSize);
  try {
    const migrator = new Migrator({ db, provider });
    if (options.migrate ?? true) {
      const { error, results } = await migrator.migrateToLatest();
      if (error) throw error;
      options.onMigrated?.((results ?? []).map((r) => r.migrationName));
    } else {
      // Reads the migration table only (creates nothing), so a database that was never migrated is merely "behind".
      const pending = (await migrator.getMigrations()).filter((m) => m.executedAt === undefined).map((m) => m.name);
      if (pending.length > 0) throw new SchemaBehindError(pending);
    }
  } catch (err) {
    await db.destroy();
    throw err;
  }
  return db;
}

function openSqlite(dataDir: string): Db {
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
  registerChangeFeed(db, sqliteChangeFeed(sqlite));
  return db;
}

/**
 * A pool of `poolSize` connections (src/db/postgres.ts sets the type parsers).
 * No statement cache: node-postgres sends each query's text with its
 * parameters, and PostgreSQL plans it per execution, which is cheap next to
 * the round trip.
 */
async function openPostgres(url: string, poolSize: number): Promise<Db> {
  const pool = await openPool(url, poolSize);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  // LISTEN on a connection of its own, for the live-key cache (src/db/change-feed.ts); db.destroy() closes it.
  try {
    registerChangeFeed(db, await openPostgresChangeFeed(url));
  } catch (err) {
    await db.destroy(); // the pool's connections
    throw err;
  }
  return db;
}

/** Caches of rows that other processes may change ask `changeFeedOf(db)` (src/db/change-feed.ts). */
export { changeFeedOf } from './change-feed.js';

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
