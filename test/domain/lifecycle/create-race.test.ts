import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config.js';
import type { Db } from '../../../src/db/database.js';
import { Generations } from '../../../src/domain/generations/generations.js';
import { ModelRegistry } from '../../../src/domain/generations/model-registry.js';
import { markUploadDeleting } from '../../../src/domain/lifecycle/marks.js';
import { GenerationLimits } from '../../../src/domain/usage/generation-usage.js';
import type { UploadStatus } from '../../../src/domain/verification.js';
import type { ObjectStore } from '../../../src/storage/object-store.js';
import { testDatabase, type TestDatabase } from '../../helpers/database.js';

// The race of issue 15 between Generations.create and a cleanup run's mark, at its narrowest: the
// reference passed verification, then the mark committed, then the create's transaction ran. Its
// lock-and-recheck finds the upload `deleting`: the same 404 as a missing key, nothing inserted.
// And the other order: a generation that committed first keeps the mark from happening.

let database: TestDatabase;
let db: Db;
const KEY = 'users/ann/user-uploads/b/start.png';
const OTHER = 'users/ann/user-uploads/b/other.png';

beforeAll(async () => {
  database = await testDatabase('create-race');
  db = await database.open();
  await db.insertInto('users').values({ id: 'ann', webhook_secret: 'whsec_x', created_at: new Date().toISOString() }).execute();
  for (const s3_key of [KEY, OTHER]) {
    await db
      .insertInto('uploads')
      .values({
        s3_key,
        user_id: 'ann',
        content_type: 'image/png',
        max_bytes: 1000,
        state: 'verified',
        size: 10,
        etag: '"e"',
        created_at: '2026-01-01T00:00:00.000Z',
        expires_at: '2026-01-01T00:15:00.000Z',
        uploaded_at: '2026-01-01T00:01:00.000Z',
        verified_at: '2026-01-01T00:02:00.000Z',
      })
      .execute();
  }
});

afterAll(async () => {
  await db?.destroy();
  await database?.dispose();
});

/** The verified status of a key, as the Verifier answers it; `after` runs once it was answered. */
function verifierThen(after: (key: string) => Promise<void>) {
  return {
    async status(_userId: string, key: string): Promise<UploadStatus> {
      const status: UploadStatus = {
        s3_key: key,
        state: 'verified',
        content_type: 'image/png',
        family: 'image',
        size: 10,
        max_bytes: 1000,
        sniffed_type: 'image/png',
        sha256: null,
        etag: '"e"',
        media: null,
        expires_at: null,
        delete_after: null,
      };
      await after(key);
      return status;
    },
  };
}

function generations(verifier: ReturnType<typeof verifierThen>, enqueued: string[]): Generations {
  const registry = ModelRegistry.load(loadConfig({}).generation.modelsFile);
  const queue = { enqueue: async (id: string) => void enqueued.push(id), close: async () => {} };
  const limits = new GenerationLimits(db, { activeGenerations: 100, generationsPerHour: 100 });
  return new Generations(db, verifier, registry, queue, {} as ObjectStore, { refusal: async () => null }, limits);
}

describe('Generations.create against a cleanup mark', () => {
  it('marked after verification, before the insert: 404 for that field, nothing inserted or enqueued', async () => {
    const enqueued: string[] = [];
    const marking = verifierThen(async (key) => {
      if (key === KEY) expect(await markUploadDeleting(db, KEY, 'unused', new Date(), () => true)).toBe(true);
    });
    const create = generations(marking, enqueued).create('ann', { prompt: 'p', modelName: 'keyframe-local', ingredientImageKeys: [OTHER], endFrameKey: KEY });
    await expect(create).rejects.toMatchObject({ code: 'not_found', message: 'endFrameKey: no upload found with this key' });
    expect(enqueued).toEqual([]);
    expect(await db.selectFrom('generations').select('id').execute()).toEqual([]);
    expect(await db.selectFrom('generation_references').selectAll().execute()).toEqual([]);
    // Rolled back whole: the other reference's last use was not kept either.
    expect((await db.selectFrom('uploads').select('last_used_at').where('s3_key', '=', OTHER).executeTakeFirstOrThrow()).last_used_at).toBeNull();
  });

  it('a generation that committed first: the mark, once it holds the row, sees it in use and leaves the upload', async () => {
    const enqueued: string[] = [];
    const created = await generations(verifierThen(async () => {}), enqueued).create('ann', { prompt: 'p', modelName: 'keyframe-local', startFrameKey: OTHER });
    const id = created.generations[0]!.generation_id;
    expect(enqueued).toEqual([id]);
    expect(await db.selectFrom('generation_references').selectAll().execute()).toEqual([{ generation_id: id, s3_key: OTHER }]);
    // Eligible by the caller's rule, but named by a generation still generating.
    expect(await markUploadDeleting(db, OTHER, 'used', new Date(), () => true)).toBe(false);
    expect((await db.selectFrom('uploads').select('state').where('s3_key', '=', OTHER).executeTakeFirstOrThrow()).state).toBe('verified');
  });
});
