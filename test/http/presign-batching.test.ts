import path from 'node:path';
import SQLite from 'better-sqlite3';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchedInsert } from '../../src/db/batched-insert.js';
import { QUOTAS_LIFTED, startTestServer, type TestServer } from '../helpers/server.js';

/**
 * Upload records of concurrent presigns are written in shared transactions
 * (src/db/batched-insert.ts). These tests hold it to its promise: a presign is
 * answered only once its row is committed, and a failed transaction fails the
 * requests of its batch and leaves none of their rows behind.
 */

const PRESIGN = '/api/s3/presign-upload';
const CONCURRENT = 60;

let server: TestServer;
let key: string;
/** A second, read-only connection: it sees only what the server has committed. */
let reader: SQLite.Database;

beforeAll(async () => {
  server = await startTestServer(QUOTAS_LIFTED);
  key = (await server.createKey('batcher')).key;
  reader = new SQLite(path.join(server.dataDir, 'keyframe.sqlite'), { readonly: true });
});
afterAll(async () => {
  reader?.close();
  await server?.stop();
});

const committedRow = (s3Key: string) => reader.prepare('SELECT file_name, user_id, state FROM uploads WHERE s3_key = ?').get(s3Key) as
  | { file_name: string; user_id: string; state: string }
  | undefined;
const committedFileNames = (prefix: string) =>
  (reader.prepare('SELECT file_name FROM uploads WHERE file_name LIKE ?').all(`${prefix}%`) as { file_name: string }[]).map((r) => r.file_name).sort();

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
          if (status === 200) seenAtAnswer.set(body.s3_key, committedRow(body.s3_key));
        }),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(Array(CONCURRENT).fill(200));
    const keys = new Set(results.map((r) => r.body.s3_key as string));
    expect(keys.size).toBe(CONCURRENT);
    results.forEach((r, i) => {
      // Read through the other connection when the answer arrived: committed already.
      expect(seenAtAnswer.get(r.body.s3_key)).toEqual({ file_name: `burst-${String(i).padStart(3, '0')}.png`, user_id: 'batcher', state: 'pending' });
    });
    expect(committedFileNames('burst-')).toHaveLength(CONCURRENT);
  });

  it('a failing insert answers 500 to the requests of its batch (so no answer precedes its commit) and leaves no rows of theirs', async () => {
    // A real failure of the real database: a trigger that aborts the record of one poisoned file name.
    await sql`CREATE TRIGGER refuse_poison BEFORE INSERT ON uploads WHEN NEW.file_name = 'mixed-poison.png'
      BEGIN SELECT RAISE(ABORT, 'poisoned upload record'); END`.execute(server.db);
    try {
      const names = Array.from({ length: CONCURRENT }, (_, i) => (i === CONCURRENT / 2 ? 'mixed-poison.png' : `mixed-${String(i).padStart(3, '0')}.png`));
      const results = await Promise.all(names.map((name) => presign(name)));
      const poisoned = results[CONCURRENT / 2]!;
      expect(poisoned.status).toBe(500);
      expect(poisoned.body).toEqual({ error: 'server_error', message: 'Internal server error' });
      const answered = names.filter((_, i) => results[i]!.status === 200).sort();
      for (const r of results) {
        if (r.status !== 200) expect(r.body).toEqual({ error: 'server_error', message: 'Internal server error' });
      }
      // Exactly the acknowledged records exist: none of a failed batch, none lost from a good one.
      expect(committedFileNames('mixed-')).toEqual(answered);
    } finally {
      await sql`DROP TRIGGER refuse_poison`.execute(server.db);
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

  it('rows handed over in one turn commit together, and one bad row fails them all (one statement or several)', async () => {
    const inserts = new BatchedInsert(server.db, 'uploads');
    await sql`CREATE TRIGGER refuse_direct BEFORE INSERT ON uploads WHEN NEW.file_name = 'direct-bad.png'
      BEGIN SELECT RAISE(ABORT, 'bad direct row'); END`.execute(server.db);
    try {
      // Same turn, so one batch: more rows than one statement holds, one of them refused.
      const names = Array.from({ length: 250 }, (_, i) => (i === 180 ? 'direct-bad.png' : `direct-a-${i}.png`));
      const outcomes = await Promise.allSettled(names.map((n) => inserts.insert(row(n))));
      for (const o of outcomes) {
        expect(o.status).toBe('rejected');
        expect(String((o as PromiseRejectedResult).reason)).toContain('bad direct row');
      }
      expect(committedFileNames('direct-a-')).toEqual([]);

      // A batch that fits one statement runs without BEGIN/COMMIT: the statement alone must be all or nothing.
      const small = Array.from({ length: 40 }, (_, i) => (i === 30 ? 'direct-bad.png' : `direct-s-${i}.png`));
      const smallOutcomes = await Promise.allSettled(small.map((n) => inserts.insert(row(n))));
      expect(smallOutcomes.map((o) => o.status)).toEqual(small.map(() => 'rejected'));
      expect(committedFileNames('direct-s-')).toEqual([]);

      // The next batch is unaffected by the failure of the one before.
      const good = Array.from({ length: 250 }, (_, i) => `direct-b-${String(i).padStart(3, '0')}.png`);
      await Promise.all(good.map((n) => inserts.insert(row(n))));
      expect(committedFileNames('direct-b-')).toEqual(good);
    } finally {
      await sql`DROP TRIGGER refuse_direct`.execute(server.db);
    }
  });
});
