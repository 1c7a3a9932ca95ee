import { mkdtemp, rm, stat, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/database.js';

/** The data dir holds webhook secrets and key hashes: nobody but its owner may read it (issue 16, finding 6). */
describe('database files', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });

  const modeOf = async (file: string) => (await stat(file)).mode & 0o777;

  it('makes the data dir 0700 and the database and its WAL files 0600 under a permissive umask', async () => {
    const parent = await mkdtemp(path.join(tmpdir(), 'keyframe-db-'));
    dirs.push(parent);
    const dataDir = path.join(parent, 'data');
    const previous = process.umask(0o022);
    try {
      const db = await openDatabase(dataDir);
      await db.selectFrom('users').selectAll().execute();
      expect(await modeOf(dataDir)).toBe(0o700);
      for (const name of ['keyframe.sqlite', 'keyframe.sqlite-wal', 'keyframe.sqlite-shm']) {
        expect(await modeOf(path.join(dataDir, name)), name).toBe(0o600);
      }
      await db.destroy();
    } finally {
      process.umask(previous);
    }
  });

  it('tightens a data dir and database that an older version left world-readable', async () => {
    const parent = await mkdtemp(path.join(tmpdir(), 'keyframe-db-'));
    dirs.push(parent);
    const dataDir = path.join(parent, 'data');
    await (await openDatabase(dataDir)).destroy();
    await chmod(dataDir, 0o755);
    await chmod(path.join(dataDir, 'keyframe.sqlite'), 0o644);
    await (await openDatabase(dataDir)).destroy();
    expect(await modeOf(dataDir)).toBe(0o700);
    expect(await modeOf(path.join(dataDir, 'keyframe.sqlite'))).toBe(0o600);
  });
});
