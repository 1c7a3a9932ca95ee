import { sql, type CompiledQuery } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import { abortExpiredUploads } from '../../src/domain/multipart-uploads.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { TEST_DIALECT, testDatabase, type TestDatabase } from '../helpers/database.js';
import { capturedQueries, postgresPlan, sqlitePlan } from '../helpers/query-plans.js';

// The multipart sweep's query over every user (src/domain/multipart-sweep.ts) reads the partial
// index `uploads_multipart_expiry` (migration 010) on both dialects, never a scan of `uploads`:
// 20 000 uploads of 400 users, 1 in 20 multipart, most pending; captured as compiled, then EXPLAINed.

let database: TestDatabase;
let db: Db;

beforeAll(async () => {
  database = await testDatabase('mp-plan');
  db = await database.open();
  const now = Date.now();
  const iso = (ms: number) => new Date(ms).toISOString();
  const users = Array.from({ length: 400 }, (_, u) => `user-${String(u).padStart(4, '0')}`);
  await db.insertInto('users').values(users.map((id) => ({ id, webhook_secret: 'whsec_x', created_at: iso(now) }))).execute();
  const rows = users.flatMap((user_id) =>
    Array.from({ length: 50 }, (_, i) => ({
      s3_key: `users/${user_id}/user-uploads/${String(i).padStart(5, '0')}/f.mp4`,
      user_id,
      content_type: 'video/mp4',
      max_bytes: 200_000_000,
      content_length: null,
      file_name: null,
      state: i % 5 === 0 ? ('verified' as const) : ('pending' as const),
      size: i % 5 === 0 ? 1000 : null,
      sha256: null,
      etag: null,
      sniffed_type: null,
      reason: null,
      media_width: null,
      media_height: null,
      media_duration_seconds: null,
      media_video_codec: null,
      media_audio_codec: null,
      multipart_upload_id: i % 20 === 1 ? `mp-${user_id}-${i}` : null,
      created_at: iso(now - 86_400_000),
      expires_at: iso(now + ((i % 7) - 3) * 3_600_000),
      uploaded_at: null,
      verified_at: null,
    })),
  );
  for (let i = 0; i < rows.length; i += 500) await db.insertInto('uploads').values(rows.slice(i, i + 500)).execute();
  await sql.raw(TEST_DIALECT === 'postgres' ? 'vacuum analyze' : 'analyze').execute(db);
}, 120_000);

afterAll(async () => {
  await db?.destroy();
  await database?.dispose();
});

/** The sweep's SELECT as it compiles (with a clock before every expiry: nothing is claimed). */
async function sweepQuery(): Promise<CompiledQuery> {
  const store = {} as ObjectStore; // never called: nothing has expired by then
  const queries = await capturedQueries(db, async (watched) => {
    const { aborted } = await abortExpiredUploads(watched, store, { now: new Date(Date.now() - 7 * 86_400_000), limit: 100 });
    expect(aborted).toEqual([]);
  });
  expect(queries).toHaveLength(1);
  return queries[0]!;
}

describe('the multipart sweep query', () => {
  it.skipIf(TEST_DIALECT !== 'sqlite')('SQLite: a SEARCH of uploads_multipart_expiry, no scan, no sort', async () => {
    const plan = await sqlitePlan(db, await sweepQuery());
    expect(plan.join('; ')).toMatch(/SEARCH uploads USING INDEX uploads_multipart_expiry \(state=\? AND expires_at<\?\)/);
    expect(plan.filter((d) => /^SCAN uploads\b|TEMP B-TREE/.test(d)), plan.join('; ')).toEqual([]);
  });

  it.skipIf(TEST_DIALECT !== 'postgres')('PostgreSQL: an index scan of uploads_multipart_expiry, no Seq Scan', async () => {
    const plan = await postgresPlan(db, await sweepQuery());
    expect(plan, plan).toMatch(/Index Scan using uploads_multipart_expiry\b/);
    expect(plan, plan).not.toMatch(/Seq Scan on uploads\b/);
  });
});
