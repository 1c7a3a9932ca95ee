import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchedInsert } from '../../src/db/batched-insert.js';
import type { Db } from '../../src/db/database.js';
import { refuseInserts } from '../helpers/database.js';
import { QUOTAS_LIFTED, startTestServer, type TestServer } from '../helpers/server.js';

/**
 * Upload records of concurrent presigns are written in shared transactions
 * (src/db/batched-insert.ts). These tests hold it to its promises: a presign is
 * answered only once its row is committed, and a row that fails fails only its
 * own request: the rest of its batch is retried row by row and committed.
 * Runs on the project's dialect (SQLite or PostgreSQL, test/helpers/database.ts).
 */

const PRESIGN = '/api/s3/presign-upload';
const CONCURRENT = 60;

let server: TestServer;
let key: string;
/** A second connection: it sees only what the server has committed. */
let reader: Db;

beforeAll(async () => {
  server = await startTestServer(QUOTAS_LIFTED);
  key = (await server.createKey('batcher')).key;
  reader = await server.database.secondConnection();
});
afterAll(async () => {
  await reader?.destroy();
  await server?.stop();
});

const committedRow = (s3Key: string) =>
  reader.selectFrom('uploads').select(['file_name', 'user_id', 'state']).where('s3_key', '=', s3Key).executeTakeFirst();
const committedFileNames = async (prefix: string) =>
  (await reader.selectFrom('uploads').select('file_name').where('file_name', 'like', `${prefix}%`).execute()).map((r) => r.file_name!).sort();

/** One presign over real HTTP; `onAnswer` runs the moment its answer is read, before any other await. */
async function presign(fileName: string, onAnswer?: (status: number, body: any) => void): Promise<{ status: number; body: any }> {
  const res = await fetch(server.url + PRESIGN, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'upload', contentType: 'image/png', fileName }),
    signal: AbortSignal.timeout(20_000),
  });
  const body = await res.json();
  onAnswer?.(res.status, body);
  return { status: res.status, body };
}

describe('concurrent presigns share transactions without losing a record', () => {
  // Seen from a second connection when each answer is read; that the answer waits for the commit
  // (and not merely precedes it by a hair) is what the failing-batch test below proves.
  it(`${CONCURRENT} concurrent presigns: all recorded, each row committed when its answer is read`, async () => {
    const seenAtAnswer = new Map<string, ReturnType<typeof committedRow>>();
    const results = await Promise.all(
      Array.from({ length: CONCURRENT }, (_, i) =>
        presign(`burst-${String(i).padStart(3, '0')}.png`, (status, body) => {
          // The read is sent the moment the answer is read, before any other await.
          if (status === 200) seenAtAnswer.set(body.s3_key, committedRow(body.s3_key));
        }),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(Array(CONCURRENT).fill(200));
    const keys = new Set(results.map((r) => r.body.s3_key as string));
    expect(keys.size).toBe(CONCURRENT);
    for (const [i, r] of results.entries()) {
      // Read through the other connection when the answer arrived: committed already.
      expect(await seenAtAnswer.get(r.body.s3_key)).toEqual({ file_name: `burst-${String(i).padStart(3, '0')}.png`, user_id: 'batcher', state: 'pending' });
    }
    expect(await committedFileNames('burst-')).toHaveLength(CONCURRENT);
  });

  it('a failing insert answers 500 to its own request only: the rest of its batch is answered 200 with its rows committed', async () => {
    // A real failure of the real database: a trigger that aborts the record of one poisoned file name.
    const allow = await refuseInserts(server.db, { table: 'uploads', message: 'poisoned upload record', when: { column: 'file_name', equals: 'mixed-poison.png' } });
    let results: { status: number; body: any }[];
    const names = Array.from({ length: CONCURRENT }, (_, i) => (i === CONCURRENT / 2 ? 'mixed-poison.png' : `mixed-${String(i).padStart(3, '0')}.png`));
    try {
      results = await Promise.all(names.map((name) => presign(name)));
    } finally {
      await allow();
    }
    const poisoned = results[CONCURRENT / 2]!;
    expect(poisoned.status).toBe(500);
    expect(poisoned.body).toEqual({ error: 'server_error', message: 'Internal server error' });
    const others = results.filter((_, i) => i !== CONCURRENT / 2);
    expect(others.map((r) => r.status)).toEqual(others.map(() => 200));
    // Exactly the acknowledged records exist: every other request's, none of the poisoned one.
    const good = names.filter((n) => n !== 'mixed-poison.png').sort();
    expect(await committedFileNames('mixed-')).toEqual(good);
    for (const [i, r] of results.entries()) {
      if (i !== CONCURRENT / 2) expect(await committedRow(r.body.s3_key)).toEqual({ file_name: names[i], user_id: 'batcher', state: 'pending' });
    }
    expect((await presign('after-poison.png')).status).toBe(200);
  });
});

describe('BatchedInsert on the real database', () => {
  const row = (fileName: string) => ({
    s3_key: `users/batcher/user-uploads/direct/${fileName}`,
    user_id: 'batcher',
    content_type: 'image/png',
    max_bytes: 1000,
    content_length: null,
    file_name: fileName,
    state: 'pending' as const,
    size: null,
    sha256: null,
    sniffed_type: null,
    reason: null,
    created_at: new Date().toISOString(),
    expires_at: new Date().toISOString(),
    uploaded_at: null,
    verified_at: null,
  });

  it('rows handed over in one turn commit together, and one bad row fails only itself (one statement or several)', async () => {
    const inserts = new BatchedInsert(server.db, 'uploads');
    const allow = await refuseInserts(server.db, { table: 'uploads', message: 'bad direct row', when: { column: 'file_name', equals: 'direct-bad.png' } });
    try {
      // Same turn, so one batch: more rows than one statement holds (a transaction), one of them refused.
      const names = Array.from({ length: 250 }, (_, i) => (i === 180 ? 'direct-bad.png' : `direct-a-${String(i).padStart(3, '0')}.png`));
      const outcomes = await Promise.allSettled(names.map((n) => inserts.insert(row(n))));
      outcomes.forEach((o, i) => {
        if (i === 180) {
          expect(o.status).toBe('rejected');
          expect(String((o as PromiseRejectedResult).reason)).toContain('bad direct row');
        } else {
          expect(o.status, names[i]).toBe('fulfilled');
        }
      });
      expect(await committedFileNames('direct-a-')).toEqual(names.filter((n) => n !== 'direct-bad.png'));

      // A batch that fits one statement runs without BEGIN/COMMIT: the same holds.
      const small = Array.from({ length: 40 }, (_, i) => (i === 30 ? 'direct-bad.png' : `direct-s-${String(i).padStart(3, '0')}.png`));
      const smallOutcomes = await Promise.allSettled(small.map((n) => inserts.insert(row(n))));
      expect(smallOutcomes.map((o) => o.status)).toEqual(small.map((n) => (n === 'direct-bad.png' ? 'rejected' : 'fulfilled')));
      expect(await committedFileNames('direct-s-')).toEqual(small.filter((n) => n !== 'direct-bad.png'));

      // Two rows of one batch with the same key: the first is committed, the second alone is refused.
      const twice = await Promise.allSettled([inserts.insert(row('direct-dup.png')), inserts.insert(row('direct-dup.png')), inserts.insert(row('direct-dup-other.png'))]);
      expect(twice.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expect(await committedFileNames('direct-dup')).toEqual(['direct-dup-other.png', 'direct-dup.png']);

      // The next batch is unaffected by the failure of the one before: one batch, committed whole.
      const good = Array.from({ length: 250 }, (_, i) => `direct-b-${String(i).padStart(3, '0')}.png`);
      await Promise.all(good.map((n) => inserts.insert(row(n))));
      expect(await committedFileNames('direct-b-')).toEqual(good);
    } finally {
      await allow();
    }
  });

  it('a batch that fails as a whole (no row can be written) rejects every row with the database error', async () => {
    const inserts = new BatchedInsert(server.db, 'uploads');
    const allow = await refuseInserts(server.db, { table: 'uploads', message: 'every row refused' });
    try {
      const names = Array.from({ length: 30 }, (_, i) => `direct-all-${i}.png`);
      const outcomes = await Promise.allSettled(names.map((n) => inserts.insert(row(n))));
      for (const o of outcomes) {
        expect(o.status).toBe('rejected');
        expect(String((o as PromiseRejectedResult).reason)).toContain('every row refused');
      }
    } finally {
      await allow();
    }
    expect(await committedFileNames('direct-all-')).toEqual([]);
  });
});
