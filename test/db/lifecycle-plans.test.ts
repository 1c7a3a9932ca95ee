import { sql, type CompiledQuery } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import type { UploadState } from '../../src/db/schema.js';
import { UploadCleanup } from '../../src/domain/lifecycle/cleanup.js';
import { deleteAfter } from '../../src/domain/lifecycle/delete-after.js';
import { inUse } from '../../src/domain/lifecycle/marks.js';
import type { ObjectStore } from '../../src/storage/object-store.js';
import { TEST_DIALECT, testDatabase, type TestDatabase } from '../helpers/database.js';
import { capturedQueries, postgresPlan, sqlitePlan } from '../helpers/query-plans.js';

// The cleanup job's queries (src/domain/lifecycle/cleanup.ts) each read one of the indexes of
// migration 011 on both dialects, never a scan of `uploads` or `generations`: 20 000 uploads of
// 400 users in every state, 4 000 generations naming 4 000 of them; the queries captured as
// compiled (a run whose clock is before every row: nothing is due), then EXPLAINed.

let database: TestDatabase;
let db: Db;
const iso = (ms: number) => new Date(ms).toISOString();
const STATES: UploadState[] = ['pending', 'pending', 'verified', 'verified', 'verified', 'uploaded', 'rejected', 'deleted', 'expired', 'verified'];
let usedKey = '';

beforeAll(async () => {
  database = await testDatabase('lifecycle-plan');
  db = await database.open();
  const now = Date.now();
  const users = Array.from({ length: 400 }, (_, u) => `user-${String(u).padStart(4, '0')}`);
  await db.insertInto('users').values(users.map((id) => ({ id, webhook_secret: 'whsec_x', created_at: iso(now) }))).execute();
  const rows = users.flatMap((user_id, u) =>
    Array.from({ length: 50 }, (_, i) => {
      const state = STATES[i % STATES.length]!;
      const stored = state === 'verified' || state === 'uploaded';
      return {
        s3_key: `users/${user_id}/user-uploads/${String(i).padStart(5, '0')}/f.png`,
        user_id,
        content_type: 'image/png',
        max_bytes: 20_000_000,
        state,
        size: stored ? 1000 : null,
        multipart_upload_id: i % 20 === 1 ? `mp-${user_id}-${i}` : null,
        created_at: iso(now - (u * 50 + i) * 60_000),
        expires_at: iso(now - (u * 50 + i) * 60_000 + 900_000),
        uploaded_at: stored ? iso(now - (u * 50 + i) * 60_000 + 60_000) : null,
        verified_at: state === 'verified' ? iso(now - (u * 50 + i) * 60_000 + 61_000) : null,
        // One verified upload in five is used by a generation.
        last_used_at: state === 'verified' && i % 5 === 4 ? iso(now - i * 1000) : null,
      };
    }),
  );
  for (let i = 0; i < rows.length; i += 500) await db.insertInto('uploads').values(rows.slice(i, i + 500)).execute();
  const used = rows.filter((r) => r.last_used_at !== null);
  usedKey = used[0]!.s3_key;
  const generations = used.map((r, g) => ({
    id: `gen_${String(g).padStart(6, '0')}`,
    user_id: r.user_id,
    model_name: 'keyframe-local',
    prompt: 'p',
    params: '{}',
    template_id: null,
    webhook_url: null,
    status: g % 10 === 0 ? ('generating' as const) : g % 10 === 1 ? ('failed' as const) : ('completed' as const),
    error: null,
    attempts: 1,
    video_key: g % 10 > 1 ? `users/${r.user_id}/generations/gen_${g}.mp4` : null,
    created_at: r.last_used_at!,
    started_at: r.last_used_at!,
    completed_at: g % 10 === 0 ? null : r.last_used_at!,
    video_delete_marked_at: g % 10 === 2 ? r.last_used_at! : null,
    video_deleted_at: g % 10 === 2 ? r.last_used_at! : null,
  }));
  for (let i = 0; i < generations.length; i += 500) await db.insertInto('generations').values(generations.slice(i, i + 500)).execute();
  const references = used.map((r, g) => ({ generation_id: generations[g]!.id, s3_key: r.s3_key }));
  for (let i = 0; i < references.length; i += 500) await db.insertInto('generation_references').values(references.slice(i, i + 500)).execute();
  await sql.raw(TEST_DIALECT === 'postgres' ? 'vacuum analyze' : 'analyze').execute(db);
}, 120_000);

afterAll(async () => {
  await db?.destroy();
  await database?.dispose();
});

/** The SELECTs a run compiles (its clock is before every row: nothing is due, so the store is never called), and the per-key checks. */
async function cleanupQueries(): Promise<CompiledQuery[]> {
  const store = {} as ObjectStore;
  const policy = { unusedSeconds: 86_400, usedSeconds: 3600, videosSeconds: 86_400, expiryGraceSeconds: 60 };
  const longAgo = new Date('2000-01-01T00:00:00.000Z');
  const queries = await capturedQueries(db, async (watched) => {
    const result = await new UploadCleanup(watched, store, { policy, clock: { now: () => longAgo } }).runOnce();
    expect(result).toMatchObject({ ran: true, resumed: 0, expired: 0, arrived: 0, unused: 0, used: 0, videos: 0 });
    const row = await db.selectFrom('uploads').selectAll().where('s3_key', '=', usedKey).executeTakeFirstOrThrow();
    await deleteAfter(watched, policy, row);
    await inUse(watched, usedKey);
  });
  return queries.filter((q) => /^select/i.test(q.sql));
}

describe('the cleanup queries', () => {
  it('are the nine the job and the status run', async () => {
    // Resume (uploads, videos), expiry, unused (verified, uploaded), used, videos; then the per-key checks.
    expect(await cleanupQueries()).toHaveLength(9);
  });

  it.skipIf(TEST_DIALECT !== 'sqlite')('SQLite: each a SEARCH of an index, no scan, no sort', async () => {
    const plans: string[] = [];
    for (const query of await cleanupQueries()) {
      const plan = (await sqlitePlan(db, query)).join('; ');
      expect(plan, `${query.sql}\n${plan}`).not.toMatch(/\bSCAN (uploads|generations|generation_references)\b|TEMP B-TREE/);
      plans.push(plan);
    }
    const all = plans.join('\n');
    expect(all).toMatch(/SEARCH uploads USING INDEX uploads_state_expiry \(state=\?\)/);
    expect(all).toMatch(/SEARCH uploads USING INDEX uploads_state_expiry \(state=\? AND expires_at<\?\)/);
    expect(all).toMatch(/SEARCH uploads USING INDEX uploads_unused_retention \(state=\? AND uploaded_at>\? AND uploaded_at<\?\)/);
    expect(all).toMatch(/SEARCH uploads USING INDEX uploads_used_retention \(state=\? AND last_used_at>\? AND last_used_at<\?\)/);
    expect(all).toMatch(/SEARCH generations USING INDEX generations_video_retention \(status=\? AND completed_at<\?\)/);
    expect(all).toMatch(/SEARCH generations USING INDEX generations_video_deleting/);
    expect(all).toMatch(/SEARCH generation_references USING COVERING INDEX generation_references_key \(s3_key=\?\)/);
  });

  it.skipIf(TEST_DIALECT !== 'postgres')('PostgreSQL: each an index scan, no Seq Scan', async () => {
    const plans: string[] = [];
    for (const query of await cleanupQueries()) {
      const plan = await postgresPlan(db, query);
      expect(plan, `${query.sql}\n${plan}`).not.toMatch(/Seq Scan on (uploads|generations|generation_references)\b/);
      plans.push(plan);
    }
    const all = plans.join('\n');
    for (const index of ['uploads_state_expiry', 'uploads_unused_retention', 'uploads_used_retention', 'generations_video_retention', 'generations_video_deleting', 'generation_references_key']) {
      expect(all, all).toMatch(new RegExp(`(Index|Index Only|Bitmap Index) Scan (using|on) ${index}\\b`));
    }
  });
});
