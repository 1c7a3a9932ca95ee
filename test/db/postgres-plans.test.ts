import { sql, type CompiledQuery } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import { hashApiKey } from '../../src/domain/api-keys.js';
import { readGenerationUsage } from '../../src/domain/usage/generation-usage.js';
import { readUploadUsage } from '../../src/domain/usage/upload-usage.js';
import { readUserUsage } from '../../src/domain/usage/user-usage.js';
import { nextJobQuery } from '../../src/queue/in-process-queue.js';
import { TEST_DIALECT, testDatabase, type TestDatabase } from '../helpers/database.js';
import { capturedQueries, postgresPlan } from '../helpers/query-plans.js';
import { loadConfig } from '../../src/config.js';

/**
 * The hot queries' plans on PostgreSQL (issue 11), as test/queue/fair-queue.test.ts
 * checks the fair queue's on SQLite: after seeding thousands of rows and
 * ANALYZE, every hot query reads its rows through an index, never a Seq Scan
 * of a table. The queries are the ones the code really sends: captured as
 * they are compiled, then EXPLAINed with their parameters.
 */
let database: TestDatabase;
let db: Db;

const USERS = 500;
const UPLOADS_PER_USER = 60; // 30 000 uploads
const GENERATIONS_PER_USER = 30; // 15 000 generations, a few queued or running

beforeAll(async () => {
  if (TEST_DIALECT !== 'postgres') return;
  database = await testDatabase('plans');
  db = await database.open();
  const now = Date.now();
  const iso = (ms: number) => new Date(ms).toISOString();
  const users = Array.from({ length: USERS }, (_, u) => `user-${String(u).padStart(4, '0')}`);
  await db.insertInto('users').values(users.map((id) => ({ id, webhook_secret: 'whsec_x', created_at: iso(now) }))).execute();
  const keys = users.flatMap((user_id, u) =>
    [0, 1, 2].map((k) => ({
      id: `key_${u}_${k}`,
      user_id,
      key_hash: hashApiKey(`key-${u}-${k}`),
      display_prefix: 'prism_sk_xxxxxx',
      scopes: '["templates:read"]',
      name: null,
      created_at: iso(now - k),
      revoked_at: k === 2 ? iso(now) : null,
    })),
  );
  for (let i = 0; i < keys.length; i += 1000) await db.insertInto('api_keys').values(keys.slice(i, i + 1000)).execute();
  const states = ['verified', 'verified', 'verified', 'uploaded', 'rejected', 'pending'] as const;
  const uploads = users.flatMap((user_id, u) =>
    Array.from({ length: UPLOADS_PER_USER }, (_, i) => {
      const state = states[i % states.length]!;
      return {
        s3_key: `users/${user_id}/user-uploads/${String(i).padStart(5, '0')}/f.png`,
        user_id,
        content_type: 'image/png',
        max_bytes: 10_000_000,
        content_length: i % 2 ? 1000 + u : null,
        file_name: 'f.png',
        state,
        size: state === 'pending' ? null : 1000 + i,
        sha256: null,
        etag: null,
        sniffed_type: null,
        reason: null,
        media_width: null,
        media_height: null,
        media_duration_seconds: null,
        media_video_codec: null,
        media_audio_codec: null,
        created_at: iso(now - (UPLOADS_PER_USER - i) * 60_000),
        expires_at: iso(now + (i % 12 - 6) * 60_000),
        uploaded_at: null,
        verified_at: null,
      };
    }),
  );
  for (let i = 0; i < uploads.length; i += 1000) await db.insertInto('uploads').values(uploads.slice(i, i + 1000)).execute();
  const generations = users.flatMap((user_id, u) =>
    Array.from({ length: GENERATIONS_PER_USER }, (_, i) => {
      // Most are done; the last of every 10th user is queued, of every 50th running.
      const queued = i === GENERATIONS_PER_USER - 1 && u % 10 === 0;
      const running = i === GENERATIONS_PER_USER - 2 && u % 50 === 0;
      const created = now - (GENERATIONS_PER_USER - i) * 600_000;
      return {
        id: `gen_${u}_${String(i).padStart(3, '0')}`,
        user_id,
        model_name: 'm',
        prompt: 'p',
        params: '{}',
        template_id: null,
        webhook_url: null,
        status: queued || running ? ('generating' as const) : ('completed' as const),
        error: null,
        attempts: queued ? 0 : 1,
        video_key: null,
        created_at: iso(created),
        started_at: queued ? null : iso(created + 1000),
        completed_at: queued || running ? null : iso(created + 60_000),
      };
    }),
  );
  for (let i = 0; i < generations.length; i += 1000) await db.insertInto('generations').values(generations.slice(i, i + 1000)).execute();
  // As autovacuum would: planner statistics, and the visibility map that index-only scans rely on.
  await sql`vacuum analyze`.execute(db);
}, 120_000);

afterAll(async () => {
  await db?.destroy();
  await database?.dispose();
});

const captured = (work: (db: Db) => Promise<unknown>) => capturedQueries(db, work);
const planOf = (query: CompiledQuery) => postgresPlan(db, query);

const TABLES = ['users', 'api_keys', 'uploads', 'generations'];
function expectIndexesOnly(plan: string, indexes: string[]) {
  for (const table of TABLES) expect(plan, plan).not.toMatch(new RegExp(`Seq Scan on ${table}\\b`));
  for (const index of indexes) expect(plan, plan).toMatch(new RegExp(`(using|on) ${index}\\b`));
}

describe.skipIf(TEST_DIALECT !== 'postgres')('hot query plans on PostgreSQL', () => {
  it('the key lookup by hash (a request not in the live-key cache)', async () => {
    // The query ApiKeys.authenticate compiles once (src/domain/api-keys.ts), with a real key's hash.
    const lookup = db.selectFrom('api_keys').select(['id', 'user_id', 'key_hash', 'scopes', 'revoked_at']).where('key_hash', '=', hashApiKey('key-7-0')).compile();
    expectIndexesOnly(await planOf(lookup), ['api_keys_key_hash_key']);
    expect((await db.executeQuery(lookup)).rows).toEqual([expect.objectContaining({ id: 'key_7_0', user_id: 'user-0007' })]);
  });

  it('the upload status read, the arrival update, by s3_key', async () => {
    const key = 'users/user-0007/user-uploads/00005/f.png';
    const read = db.selectFrom('uploads').selectAll().where('s3_key', '=', key).where('user_id', '=', 'user-0007').compile();
    expectIndexesOnly(await planOf(read), ['uploads_pkey']);
    const arrival = db.updateTable('uploads').set({ state: 'uploaded', size: 1 }).where('s3_key', '=', key).where('state', '=', 'pending').compile();
    expectIndexesOnly(await planOf(arrival), ['uploads_pkey']);
  });

  it('the quota aggregates of one user (readUploadUsage, readGenerationUsage, users show)', async () => {
    const now = new Date();
    const uploads = await captured((d) => readUploadUsage(d, 'user-0042', now, 3_600_000));
    expect(uploads).toHaveLength(2);
    for (const q of uploads) expectIndexesOnly(await planOf(q), ['uploads_user_state']);
    // The stored bytes come from the index alone.
    expect(await planOf(uploads[1]!)).toMatch(/Index Only Scan using uploads_user_state/);

    const generations = await captured((d) => readGenerationUsage(d, 'user-0042', now));
    expect(generations).toHaveLength(2);
    expectIndexesOnly(await planOf(generations[0]!), ['generations_user_status']);
    expectIndexesOnly(await planOf(generations[1]!), ['generations_user_created']);

    const report = await captured((d) => readUserUsage(d, 'user-0042', loadConfig({}).limits, 3_600_000, now));
    expect(report).toHaveLength(5);
    expectIndexesOnly(await planOf(report[0]!), ['users_pkey']);
  });

  it('the fair queue: choosing the next job and claiming it', async () => {
    const plan = await planOf(nextJobQuery(db).compile());
    // Queued jobs grouped by user from generations_queue; each user's last start is a max probe of generations_user_started.
    expectIndexesOnly(plan, ['generations_queue', 'generations_user_started']);
    const claim = db
      .updateTable('generations')
      .set((eb) => ({ started_at: new Date().toISOString(), attempts: eb('attempts', '+', 1) }))
      .where('id', '=', 'gen_0_029')
      .where('status', '=', 'generating')
      .where('started_at', 'is', null)
      .compile();
    expectIndexesOnly(await planOf(claim), ['generations_pkey']);
    // And it picks what the SQLite test expects: the never-served... here every user was served; the least recently.
    expect(await nextJobQuery(db).executeTakeFirst()).toEqual({ id: expect.stringMatching(/^gen_\d+_029$/) });
  });
});
