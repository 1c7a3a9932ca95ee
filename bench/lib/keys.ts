import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openDatabase } from '../../src/db/database.js';
import { ApiKeys } from '../../src/domain/api-keys.js';
import { BENCH_POSTGRES_URL, createScratchDatabase, type ScratchDatabase } from './postgres.js';

/** A fresh data dir with the schema migrated and one API key for user `bench`. */
export async function dataDirWithKey(label: string): Promise<{ dataDir: string; key: string }> {
  const dataDir = await mkdtemp(path.join(tmpdir(), `keyframe-bench-${label}-`));
  const db = await openDatabase(dataDir);
  try {
    const { key } = await new ApiKeys(db).createKey({ userId: 'bench' });
    return { dataDir, key };
  } finally {
    await db.destroy();
  }
}

/**
 * A fresh PostgreSQL scratch database with the schema migrated and one API key
 * for user `bench`, made through Keyframe's own `openDatabase`; plus a data dir
 * for what stays on disk (the disk object store, the signing secret: no SQLite
 * file is made there). `database.drop()` removes the database afterwards.
 */
export async function postgresWithKey(
  label: string,
  adminUrl = BENCH_POSTGRES_URL,
): Promise<{ dataDir: string; key: string; database: ScratchDatabase }> {
  const database = await createScratchDatabase(label, adminUrl);
  const dataDir = await mkdtemp(path.join(tmpdir(), `keyframe-bench-${label}-`));
  const db = await openDatabase({ dialect: 'postgres', url: database.url, poolSize: 2 });
  try {
    const { key } = await new ApiKeys(db).createKey({ userId: 'bench' });
    return { dataDir, key, database };
  } finally {
    await db.destroy();
  }
}
