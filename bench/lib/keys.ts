import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openDatabase } from '../../src/db/database.js';
import { ApiKeys } from '../../src/domain/api-keys.js';

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
