import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, ConfigError } from '../../src/config.js';
import { DatabaseUnreachable, openDatabase, type Db } from '../../src/db/database.js';
import { freePort } from '../../src/free-port.js';
import { ensureBuilt, runKeyframe } from '../helpers/build.js';
import { POSTGRES_ADMIN_URL, TEST_DIALECT, testDatabase, type TestDatabase } from '../helpers/database.js';

/**
 * PostgreSQL as the metadata database (issue 11): start-up failures, the
 * migration step under concurrency, and the CLI on PostgreSQL. Runs in the
 * `postgres` project of the dialect matrix only.
 */
const databases: TestDatabase[] = [];
afterEach(async () => {
  await Promise.all(databases.splice(0).map((d) => d.dispose()));
});
async function fresh(): Promise<TestDatabase> {
  const d = await testDatabase('pg');
  databases.push(d);
  return d;
}

const keyframe = runKeyframe;

const PASSWORD = 'hunter2-Secret';

describe.skipIf(TEST_DIALECT !== 'postgres')('PostgreSQL', () => {
  beforeAll(() => ensureBuilt());

  describe('an unreachable database stops the start with one line, never the password', () => {
    it('openDatabase: refused connection, unknown database', async () => {
      const port = await freePort('127.0.0.1');
      const refused = await openDatabase({ dialect: 'postgres', url: `postgres://kf:${PASSWORD}@127.0.0.1:${port}/kfdb`, poolSize: 2 }).catch((e) => e);
      expect(refused).toBeInstanceOf(DatabaseUnreachable);
      expect(refused.message).toBe(`cannot reach the PostgreSQL database "kfdb" at 127.0.0.1:${port}: connection refused`);
      expect(refused.stack).not.toContain('\n');

      const admin = new URL(POSTGRES_ADMIN_URL);
      admin.password = PASSWORD;
      admin.pathname = '/kf_no_such_database_here';
      const missing = await openDatabase({ dialect: 'postgres', url: admin.toString(), poolSize: 2 }).catch((e) => e);
      expect(missing).toBeInstanceOf(DatabaseUnreachable);
      expect(missing.message).toBe(`cannot reach the PostgreSQL database "kf_no_such_database_here" at ${admin.hostname}:${admin.port || 5432}: no such database`);
      expect(missing.message).not.toContain(PASSWORD);
    });

    it('`keyframe serve` and the other commands print it as one line on stderr and exit 1', async () => {
      const port = await freePort('127.0.0.1');
      const env = { KEYFRAME_DATABASE_URL: `postgresql://kf:${PASSWORD}@127.0.0.1:${port}/kfdb`, KEYFRAME_DATA_DIR: path.join(tmpdir(), `keyframe-never-created-${process.pid}`), PORT: '0' };
      for (const args of [['serve'], ['migrate'], ['users', 'list'], ['keys', 'create', '--user', 'a']]) {
        const run = await keyframe(args, env);
        expect(run.code, args.join(' ')).toBe(1);
        expect(run.stdout).toBe('');
        expect(run.stderr).toBe(`keyframe: cannot reach the PostgreSQL database "kfdb" at 127.0.0.1:${port}: connection refused\n`);
      }
      expect(existsSync(env.KEYFRAME_DATA_DIR)).toBe(false);
    });

    it('a malformed URL is a config error that does not echo the value', () => {
      for (const url of [`mysql://kf:${PASSWORD}@db/kf`, `postgres//kf:${PASSWORD}@db`, `http://kf:${PASSWORD}@db/kf`]) {
        let err: unknown;
        try {
          loadConfig({ KEYFRAME_DATABASE_URL: url });
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(ConfigError);
        expect(String((err as Error).message)).not.toContain(PASSWORD);
      }
      expect(() => loadConfig({ KEYFRAME_DATABASE_URL: 'postgres://db/kf', KEYFRAME_DATABASE_POOL_SIZE: '0' })).toThrow(ConfigError);
      expect(loadConfig({ KEYFRAME_DATABASE_URL: 'postgres://db/kf', KEYFRAME_DATABASE_POOL_SIZE: '25' }).database).toEqual({ url: 'postgres://db/kf', poolSize: 25 });
      expect(loadConfig({}).database).toEqual({ url: null, poolSize: 10 });
    });
  });

  describe('migrations as a step, safe when several processes start at once', () => {
    const schemaOf = async (db: Db) => ({
      migrations: (await sql<{ name: string }>`select name from kysely_migration order by name`.execute(db)).rows.map((r) => r.name),
      tables: (await sql<{ t: string }>`select tablename as t from pg_tables where schemaname = 'public' order by 1`.execute(db)).rows.map((r) => r.t),
      indexes: (await sql<{ n: number }>`select count(*) as n from pg_indexes where schemaname = 'public'`.execute(db)).rows[0]!.n,
    });
    const EXPECTED = {
      migrations: ['001_initial', '002_generations', '003_upload_etag', '004_upload_media', '005_usage_indexes', '006_job_leases', '007_webhook_deliveries', '008_runner_callbacks', '009_multipart_uploads', '010_multipart_expiry', '011_upload_lifecycle'],
      tables: ['api_keys', 'generation_references', 'generations', 'kysely_migration', 'kysely_migration_lock', 'leases', 'runner_callbacks', 'uploads', 'users', 'webhook_deliveries'],
      // 8 primary keys + api_keys.key_hash unique + 2 migration tables' keys + 17 secondary indexes (6 of them migration 011's)
      indexes: 29,
    };

    it('4 openDatabase at once on a fresh database: all succeed, each migration applied once', async () => {
      const d = await fresh();
      const applied: string[][] = [];
      const dbs = await Promise.all(
        Array.from({ length: 4 }, () => openDatabase({ dialect: 'postgres', url: d.url!, poolSize: 2 }, { onMigrated: (names) => applied.push(names) })),
      );
      try {
        expect(applied.flat().sort()).toEqual(EXPECTED.migrations);
        expect(await schemaOf(dbs[0]!)).toEqual(EXPECTED);
      } finally {
        await Promise.all(dbs.map((db) => db.destroy()));
      }
    });

    it('`keyframe migrate` ×3 at once (separate processes), then the other commands work; before it they say the schema is behind', async () => {
      const d = await fresh();
      const behind = await keyframe(['users', 'show', 'alice'], d.env);
      expect(behind.code).toBe(1);
      expect(behind.stderr).toBe('keyframe: the database schema is behind this version of Keyframe (11 migrations pending): run `keyframe migrate`\n');

      const runs = await Promise.all([1, 2, 3].map(() => keyframe(['migrate'], d.env)));
      for (const r of runs) expect(r.code, r.stderr).toBe(0);
      const appliedLines = runs.flatMap((r) => r.stdout.split('\n').filter((l) => l.startsWith('applied ')));
      expect(appliedLines.sort()).toEqual(EXPECTED.migrations.map((m) => `applied ${m}`));
      const again = await keyframe(['migrate'], d.env);
      expect(again).toMatchObject({ code: 0, stdout: 'the database schema is up to date; nothing to apply\n' });

      const created = await keyframe(['keys', 'create', '--user', 'alice', '--json'], d.env);
      expect(created.code, created.stderr).toBe(0);
      const show = await keyframe(['users', 'show', 'alice', '--json'], d.env);
      expect(show.code, show.stderr).toBe(0);
      expect(JSON.parse(show.stdout)).toMatchObject({ user_id: 'alice', pending_uploads: { used: 0 }, stored_bytes: { used: 0 }, active_generations: { used: 0 } });
      const list = await keyframe(['keys', 'list', '--json'], d.env);
      expect(JSON.parse(list.stdout)).toHaveLength(1);
      const revoke = await keyframe(['keys', 'revoke', JSON.parse(created.stdout).id], d.env);
      expect(revoke.code, revoke.stderr).toBe(0);

      const db = await d.open({ migrate: false });
      expect(await schemaOf(db)).toEqual(EXPECTED);
      expect((await db.selectFrom('api_keys').select('revoked_at').executeTakeFirstOrThrow()).revoked_at).not.toBeNull();
      // With KEYFRAME_DATABASE_URL no SQLite file is made in the data dir.
      expect(existsSync(path.join(d.dataDir, 'keyframe.sqlite'))).toBe(false);
    });
  });
});
