import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import { ApiKeys } from '../../src/domain/api-keys.js';
import { LiveKeyCache, MAX_KEY_CACHE_AGE_MS } from '../../src/domain/live-key-cache.js';
import type { Principal } from '../../src/domain/principal.js';
import { TEST_DIALECT, testDatabase, type TestDatabase } from '../helpers/database.js';

/** A request that arrives after a revocation is handled in a later event-loop turn than any before it. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let database: TestDatabase;
let db: Db;
beforeEach(async () => {
  database = await testDatabase('keys');
  db = await database.open();
});
afterEach(async () => {
  await database?.dispose();
});

/**
 * Resolves once `keys` refuses `key`: on SQLite in the very next turn (data_version is read
 * synchronously), on PostgreSQL once the NOTIFY has arrived, which must be within 1 s.
 */
async function expectRefusedSoon(keys: ApiKeys, key: string): Promise<void> {
  const deadline = Date.now() + 1000;
  for (;;) {
    await nextTurn();
    const refused = await keys.authenticate(`Bearer ${key}`).then(
      () => false,
      (err: unknown) => (err as { code?: string }).code === 'unauthorized',
    );
    if (refused) return;
    if (TEST_DIALECT === 'sqlite') throw new Error('SQLite: the revoked key was served in the next turn');
    if (Date.now() > deadline) throw new Error('the revoked key was still served 1 s after the revocation committed');
    await sleep(5);
  }
}

describe('authentication with cached live keys', () => {
  it('a key revoked through another connection (another process) is refused, on SQLite on the next call', async () => {
    const keys = new ApiKeys(db);
    const created = await keys.createKey({ userId: 'alice' });
    expect((await keys.authenticate(`Bearer ${created.key}`)).userId).toBe('alice');
    expect((await keys.authenticate(`Bearer ${created.key}`)).keyId).toBe(created.id); // now from the cache

    const other = await database.secondConnection();
    try {
      expect(await new ApiKeys(other).revokeKey(created.id)).toBe(true);
    } finally {
      await other.destroy();
    }
    await expectRefusedSoon(keys, created.key);
  });

  it.runIf(TEST_DIALECT === 'sqlite')('SQLite: any write on another connection empties the cache on the next call', async () => {
    const keys = new ApiKeys(db);
    const created = await keys.createKey({ userId: 'alice' });
    await keys.authenticate(`Bearer ${created.key}`);
    const other = await database.secondConnection();
    try {
      // Not through ApiKeys: nothing is announced, data_version moves all the same.
      await other.updateTable('api_keys').set({ revoked_at: new Date().toISOString() }).where('id', '=', created.id).execute();
    } finally {
      await other.destroy();
    }
    await nextTurn();
    await expect(keys.authenticate(`Bearer ${created.key}`)).rejects.toMatchObject({ code: 'unauthorized' });
  });

  it('a key revoked through another ApiKeys on the same connection fails on the next call', async () => {
    const serving = new ApiKeys(db);
    const created = await serving.createKey({ userId: 'bob' });
    await serving.authenticate(`Bearer ${created.key}`);
    expect(await new ApiKeys(db).revokeKey(created.id)).toBe(true);
    await expect(serving.authenticate(`Bearer ${created.key}`)).rejects.toMatchObject({ code: 'unauthorized' });
  });

  it('revoking an unknown key is false and revoking twice keeps the first time', async () => {
    const keys = new ApiKeys(db);
    expect(await keys.revokeKey('key_nope')).toBe(false);
    const created = await keys.createKey({ userId: 'bob' });
    expect(await keys.revokeKey(created.id)).toBe(true);
    const [first] = await keys.listKeys('bob');
    expect(await keys.revokeKey(created.id)).toBe(true);
    const [second] = await keys.listKeys('bob');
    expect(second!.revoked_at).toBe(first!.revoked_at);
  });

  it('a lookup that began before the cache was emptied does not put its key back', () => {
    const cache = new LiveKeyCache(() => 0);
    const principal: Principal = { keyId: 'key_1', userId: 'carol', scopes: ['templates:read'] };
    const lookup = cache.beginLookup();
    cache.clear(); // a revocation lands while the row is being read
    cache.remember(lookup, 'hash', principal);
    expect(cache.get('hash')).toBeUndefined();

    cache.remember(cache.beginLookup(), 'hash', principal);
    expect(cache.get('hash')).toBe(principal);
  });

  it('a write elsewhere during a lookup keeps its key out, and empties the cache in the next turn', async () => {
    let version = 0;
    const cache = new LiveKeyCache(() => version);
    const principal: Principal = { keyId: 'key_1', userId: 'dan', scopes: ['templates:read'] };
    cache.remember(cache.beginLookup(), 'kept', principal);
    const lookup = cache.beginLookup();
    version = 1;
    cache.remember(lookup, 'late', principal);
    expect(cache.get('late')).toBeUndefined();
    await nextTurn();
    cache.beginLookup();
    expect(cache.get('kept')).toBeUndefined();
  });

  it('reads the external version once per event-loop turn', async () => {
    let reads = 0;
    const cache = new LiveKeyCache(() => ++reads);
    const afterConstruction = reads;
    for (let i = 0; i < 10; i++) cache.beginLookup();
    expect(reads - afterConstruction).toBe(1);
    await nextTurn();
    cache.beginLookup();
    expect(reads - afterConstruction).toBe(2);
  });

  it('never serves an entry older than its bounded age, even when the feed never moves', async () => {
    expect(MAX_KEY_CACHE_AGE_MS).toBe(10_000); // the bound docs/security.md states
    const cache = new LiveKeyCache(() => 0, { maxAgeMs: 100 });
    const principal: Principal = { keyId: 'key_1', userId: 'erin', scopes: ['templates:read'] };
    cache.remember(cache.beginLookup(), 'old', principal);
    expect(cache.get('old')).toBe(principal);
    await sleep(150);
    cache.beginLookup();
    expect(cache.get('old')).toBeUndefined();
    // And a lookup begun before the age ran out does not put its row back.
    const lookup = cache.beginLookup();
    await sleep(150);
    await nextTurn();
    cache.beginLookup();
    cache.remember(lookup, 'stale', principal);
    expect(cache.get('stale')).toBeUndefined();
  });
});
