import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../../../src/db/database.js';
import { GenerationLimits } from '../../../src/domain/usage/generation-usage.js';
import { TEST_DIALECT, testDatabase, type TestDatabase } from '../../helpers/database.js';
import { queuedJob } from '../../queue/support/jobs.js';

/**
 * The generation limits across API nodes (issue 12): two GenerationLimits on two
 * connections of their own to one database stand for two nodes. The per-user
 * chain in each is process-local; only the transaction's lock on the user's row
 * keeps the nodes from both taking the last slot.
 *
 * PostgreSQL only: on SQLite two connections in one process cannot stand for
 * two nodes, since better-sqlite3 waits for a lock synchronously, blocking the
 * thread the lock holder needs to commit. Across processes SQLite's write lock
 * serialises the same transaction (every writer waits for it).
 */
let database: TestDatabase;
let nodes: Db[];

beforeEach(async () => {
  database = await testDatabase('generation-limits-nodes');
  const first = await database.open();
  await first.insertInto('users').values({ id: 'u', webhook_secret: 'whsec_x', created_at: new Date().toISOString() }).execute();
  nodes = [first, await database.secondConnection()];
});

afterEach(async () => {
  await database.dispose();
});

describe.runIf(TEST_DIALECT === 'postgres')('generation limits on two nodes of one database', () => {
  it('admits exactly the active limit in total when both nodes admit at once', async () => {
    const limit = 10;
    const limits = nodes.map((db) => new GenerationLimits(db, { activeGenerations: limit, generationsPerHour: 1000 }));
    const attempts = Array.from({ length: 40 }, (_, i) =>
      limits[i % 2]!.admit('u', 1, 5, (trx) =>
        trx
          .insertInto('generations')
          .values(queuedJob(`gen-${i}`, 'u', new Date()))
          .execute(),
      ).then(
        () => 'admitted' as const,
        (err: { code?: string }) => err.code ?? 'error',
      ),
    );
    const outcomes = await Promise.all(attempts);
    expect(outcomes.filter((o) => o === 'admitted')).toHaveLength(limit);
    expect(outcomes.filter((o) => o !== 'admitted').every((o) => o === 'rate_limited')).toBe(true);
    const rows = await nodes[0]!.selectFrom('generations').select(sql<number>`count(*)`.as('n')).executeTakeFirstOrThrow();
    expect(Number(rows.n)).toBe(limit);
  });

  it('a refused admission inserts nothing and leaves the user row as it was', async () => {
    const limits = new GenerationLimits(nodes[1]!, { activeGenerations: 1, generationsPerHour: 1000 });
    await limits.admit('u', 1, 5, (trx) => trx.insertInto('generations').values(queuedJob('gen-a', 'u', new Date())).execute());
    await expect(
      limits.admit('u', 1, 5, (trx) => trx.insertInto('generations').values(queuedJob('gen-b', 'u', new Date())).execute()),
    ).rejects.toMatchObject({ code: 'rate_limited' });
    const ids = await nodes[0]!.selectFrom('generations').select('id').execute();
    expect(ids.map((r) => r.id)).toEqual(['gen-a']);
    const user = await nodes[0]!.selectFrom('users').selectAll().executeTakeFirstOrThrow();
    expect(user.id).toBe('u');
  });
});
