import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { databaseTargetOf, dialectOf, openDatabase, SchemaBehindError } from '../../src/db/database.js';
import { ApiKeys } from '../../src/domain/api-keys.js';
import { TEST_DIALECT, testDatabase, type TestDatabase } from '../helpers/database.js';

/**
 * openDatabase on the project's dialect (issue 11): migrations as a step, and
 * results of the same JS types and order from SQLite and PostgreSQL.
 */
let database: TestDatabase;
beforeEach(async () => {
  database = await testDatabase('open');
});
afterEach(async () => database?.dispose());

const target = () =>
  database.url === undefined ? { dialect: 'sqlite' as const, dataDir: database.dataDir } : { dialect: 'postgres' as const, url: database.url, poolSize: 2 };

describe('migrations as a step', () => {
  it('without migrate, a fresh database is "behind" (one line naming the count) and is left unchanged', async () => {
    const err = await openDatabase(target(), { migrate: false }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SchemaBehindError);
    expect((err as Error).message).toBe('the database schema is behind this version of Keyframe (11 migrations pending): run `keyframe migrate`');
    // Nothing was created: the check reads the migration table only.
    const db = await openDatabase(target(), { onMigrated: (names) => expect(names).toHaveLength(11) });
    await db.destroy();
  });

  it('migrates once: a second open applies nothing, and one without migrate then opens', async () => {
    let applied: string[] = [];
    await (await openDatabase(target(), { onMigrated: (n) => (applied = n) })).destroy();
    expect(applied).toEqual(['001_initial', '002_generations', '003_upload_etag', '004_upload_media', '005_usage_indexes', '006_job_leases', '007_webhook_deliveries', '008_runner_callbacks', '009_multipart_uploads', '010_multipart_expiry', '011_upload_lifecycle']);
    await (await openDatabase(target(), { onMigrated: (n) => (applied = n) })).destroy();
    expect(applied).toEqual([]);
    const db = await openDatabase(target(), { migrate: false });
    expect(dialectOf(db)).toBe(TEST_DIALECT);
    await db.destroy();
  });

  it('databaseTargetOf picks PostgreSQL exactly when KEYFRAME_DATABASE_URL is set', () => {
    const config = loadConfig(database.env);
    expect(databaseTargetOf(config)).toEqual(
      TEST_DIALECT === 'postgres' ? { dialect: 'postgres', url: database.url, poolSize: 10 } : { dialect: 'sqlite', dataDir: database.dataDir },
    );
  });
});

describe('one fact for types and order, both dialects', () => {
  it('bigint, integer and double columns, counts and sums come back as numbers; text order is byte order', async () => {
    const db = await database.open();
    const keys = new ApiKeys(db);
    for (const id of ['alice', 'Bob', '_z', 'B-1']) await keys.createUser(id);
    const now = new Date().toISOString();
    const big = 2 ** 40 + 3; // past int4: a bigint column
    await db
      .insertInto('uploads')
      .values({
        s3_key: 'users/alice/user-uploads/x/a.mp4',
        user_id: 'alice',
        content_type: 'video/mp4',
        max_bytes: big,
        content_length: big - 1,
        file_name: 'a.mp4',
        state: 'verified',
        size: big - 2,
        sha256: null,
        etag: null,
        sniffed_type: null,
        reason: null,
        media_width: 1920,
        media_height: 1080,
        media_duration_seconds: 12.345,
        media_video_codec: 'h264',
        media_audio_codec: null,
        created_at: now,
        expires_at: now,
        uploaded_at: now,
        verified_at: now,
      })
      .execute();
    const row = await db.selectFrom('uploads').selectAll().executeTakeFirstOrThrow();
    expect(row).toMatchObject({ max_bytes: big, content_length: big - 1, size: big - 2, media_width: 1920, media_duration_seconds: 12.345, created_at: now });
    const agg = await db
      .selectFrom('uploads')
      .select([sql<number>`count(*)`.as('n'), sql<number>`sum(size)`.as('total'), sql<number>`sum(media_width)`.as('w')])
      .executeTakeFirstOrThrow();
    expect(agg).toEqual({ n: 1, total: big - 2, w: 1920 });
    // SQLite compares text as bytes; PostgreSQL's columns are COLLATE "C" whatever the database's locale.
    expect((await keys.listUsers()).map((u) => u.id)).toEqual(['B-1', 'Bob', '_z', 'alice']);
    const updated = await db.updateTable('users').set({ created_at: now }).where('id', 'in', ['alice', 'Bob']).executeTakeFirst();
    expect(updated.numUpdatedRows).toBe(2n);
    await db.destroy();
  });
});
