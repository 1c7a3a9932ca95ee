import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase, type Db } from '../../src/db/database.js';
import { ApiKeys, type Principal } from '../../src/domain/api-keys.js';
import { LiveKeyCache } from '../../src/domain/live-key-cache.js';

/** A request that arrives after a revocation is handled in a later event-loop turn than any before it. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

let dir: string;
let db: Db;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'keyframe-keys-'));
  db = await openDatabase(dir);
});
afterEach(async () => {
  await db.destroy();
  await rm(dir, { recursive: true, force: true });
});

describe('authentication with cached live keys', () => {
  it('a key revoked by a write on another connection fails on the next call', async () => {
    const keys = new ApiKeys(db);
    const created = await keys.createKey({ userId: 'alice' });
    expect((await keys.authenticate(`Bearer ${created.key}`)).userId).toBe('alice');
    expect((await keys.authenticate(`Bearer ${created.key}`)).keyId).toBe(created.id); // now from the cache

    const other = await openDatabase(dir);
    try {
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
});
