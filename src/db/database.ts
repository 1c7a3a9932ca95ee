import fs from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect, type Migration, type MigrationProvider } from 'kysely';
import type { Database } from './schema.js';
import * as m001 from './migrations/001_initial.js';
import * as m002 from './migrations/002_generations.js';
import * as m003 from './migrations/003_upload_etag.js';

export type Db = Kysely<Database>;

/** Versioned migrations, in order; a new one is a new file added here. */
const MIGRATIONS: Record<string, Migration> = {
  '001_initial': m001,
  '002_generations': m002,
  '003_upload_etag': m003,
};

const provider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

/** Opens (creating if needed) the embedded SQLite database in `dataDir` and brings its schema up to date. */
export async function openDatabase(dataDir: string): Promise<Db> {
  fs.mkdirSync(dataDir, { recursive: true });
  const sqlite = new SQLite(path.join(dataDir, 'keyframe.sqlite'));
  // WAL lets the CLI and the server share the file; NORMAL sync is durable across process crashes.
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('busy_timeout = 5000');
  sqlite.pragma('foreign_keys = ON');
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
  await migrate(db);
  return db;
}

async function migrate(db: Db): Promise<void> {
  const { error } = await new Migrator({ db, provider }).migrateToLatest();
  if (error) throw error;
}
