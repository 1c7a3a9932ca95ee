import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import * as m011 from '../../src/db/migrations/011_upload_lifecycle.js';
import { testDatabase, type TestDatabase } from '../helpers/database.js';

// Migration 011 (issue 15) on a database that already holds generations and uploads: its down
// and up again, on the project's dialect. The references are backfilled from every generation's
// params, each upload named gets its last use, and stored uploads without `uploaded_at` get one.

let database: TestDatabase;
let db: Db;

beforeAll(async () => {
  database = await testDatabase('lifecycle-migration');
  db = await database.open();
});

afterAll(async () => {
  await db?.destroy();
  await database?.dispose();
});

const key = (n: number) => `users/ann/user-uploads/b/${n}.png`;

describe('migration 011_upload_lifecycle', () => {
  it('backfills generation_references, last_used_at and uploaded_at from what older versions stored', async () => {
    await db.insertInto('users').values({ id: 'ann', webhook_secret: 'whsec_x', created_at: '2026-01-01T00:00:00.000Z' }).execute();
    for (const n of [1, 2, 3]) {
      await db
        .insertInto('uploads')
        .values({
          s3_key: key(n),
          user_id: 'ann',
          content_type: 'image/png',
          max_bytes: 1000,
          state: 'verified',
          size: 10,
          created_at: '2026-01-01T00:00:00.000Z',
          expires_at: '2026-01-01T00:15:00.000Z',
          uploaded_at: n === 3 ? null : '2026-01-01T00:01:00.000Z',
          verified_at: '2026-01-01T00:02:00.000Z',
        })
        .execute();
    }
    const generation = (id: string, createdAt: string, keys: string[]) => ({
      id,
      user_id: 'ann',
      model_name: 'keyframe-local',
      prompt: 'p',
      params: JSON.stringify({ aspectRatio: '16:9', references: keys.map((k) => ({ field: 'ingredientImageKeys', key: k })) }),
      template_id: null,
      webhook_url: null,
      status: 'completed' as const,
      error: null,
      attempts: 1,
      video_key: null,
      created_at: createdAt,
      started_at: createdAt,
      completed_at: createdAt,
    });
    await db.insertInto('generations').values([
      generation('gen_a', '2026-02-01T00:00:00.000Z', [key(1), key(1), key(2)]),
      generation('gen_b', '2026-03-01T00:00:00.000Z', [key(2)]),
      { ...generation('gen_c', '2026-04-01T00:00:00.000Z', []), params: 'not json' },
    ]).execute();

    await m011.down(db);
    await m011.up(db);

    const references = await db.selectFrom('generation_references').selectAll().orderBy('generation_id').orderBy('s3_key').execute();
    expect(references).toEqual([
      { generation_id: 'gen_a', s3_key: key(1) },
      { generation_id: 'gen_a', s3_key: key(2) },
      { generation_id: 'gen_b', s3_key: key(2) },
    ]);
    const uploads = await db.selectFrom('uploads').select(['s3_key', 'last_used_at', 'uploaded_at', 'state', 'deleted_at']).orderBy('s3_key').execute();
    expect(uploads).toEqual([
      { s3_key: key(1), last_used_at: '2026-02-01T00:00:00.000Z', uploaded_at: '2026-01-01T00:01:00.000Z', state: 'verified', deleted_at: null },
      { s3_key: key(2), last_used_at: '2026-03-01T00:00:00.000Z', uploaded_at: '2026-01-01T00:01:00.000Z', state: 'verified', deleted_at: null },
      // Never used; its arrival is its verdict's time.
      { s3_key: key(3), last_used_at: null, uploaded_at: '2026-01-01T00:02:00.000Z', state: 'verified', deleted_at: null },
    ]);
  });
});
