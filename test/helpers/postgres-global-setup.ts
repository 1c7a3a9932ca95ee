import pg from 'pg';
import { POSTGRES_ADMIN_URL } from './database.js';

/**
 * globalSetup of the `postgres` vitest project: drops the test databases that
 * a run killed before its clean-up left behind. Each is named
 * `kf_test_<pid>_<random>` after the test process that made it
 * (test/helpers/database.ts); one whose process no longer exists on this
 * machine has nobody left to use it. Databases of live processes (a
 * colleague's run) are left alone. Best effort: a failure here only warns, the
 * tests themselves report a missing PostgreSQL.
 */
export default async function dropOrphanedTestDatabases(): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 3000 });
  client.on('error', () => {});
  try {
    await client.connect();
    const { rows } = await client.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname ~ '^kf_test_[0-9]+_[0-9a-f]+$'`);
    for (const { datname } of rows) {
      const pid = Number(datname.split('_')[2]);
      if (alive(pid)) continue;
      await client.query(`DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`);
    }
  } catch (err) {
    console.warn(`could not drop orphaned test databases on ${new URL(POSTGRES_ADMIN_URL).host}: ${(err as Error).message}`);
  } finally {
    await client.end().catch(() => {});
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
