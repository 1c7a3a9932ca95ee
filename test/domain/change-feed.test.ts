import { sql } from 'kysely';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  announceKeyChange,
  changeFeedOf,
  openPostgresChangeFeed,
  type ChangeFeed,
  type PostgresFeedState,
} from '../../src/db/change-feed.js';
import type { Db } from '../../src/db/database.js';
import { ApiKeys } from '../../src/domain/api-keys.js';
import { LiveKeyCache } from '../../src/domain/live-key-cache.js';
import type { Principal } from '../../src/domain/principal.js';
import { TEST_DIALECT, testDatabase, type TestDatabase } from '../helpers/database.js';

/**
 * The change feed the live-key cache listens to (src/db/change-feed.ts), on the
 * vitest project's dialect: SQLite's data_version, PostgreSQL's LISTEN/NOTIFY
 * on a connection of its own, and what happens when that connection dies.
 */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `condition` until it holds; fails naming `what` after `ms`. */
async function until(what: string, condition: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(5);
  }
}

const principal: Principal = Object.freeze({ keyId: 'key_1', userId: 'alice', scopes: Object.freeze(['templates:read']) });

let database: TestDatabase;
let db: Db;
beforeEach(async () => {
  database = await testDatabase('feed');
  db = await database.open();
});
afterEach(async () => {
  await database?.dispose();
});

describe.runIf(TEST_DIALECT === 'sqlite')('SQLite change feed (data_version)', () => {
  it("moves when another connection commits, not for this connection's own writes", async () => {
    const feed = changeFeedOf(db);
    const before = feed.version();
    await db.insertInto('users').values({ id: 'own', webhook_secret: 'whsec_x', created_at: new Date().toISOString() }).execute();
    await announceKeyChange(db); // a no-op on SQLite
    expect(feed.version()).toBe(before);

    const other = await database.secondConnection();
    await other.insertInto('users').values({ id: 'other', webhook_secret: 'whsec_y', created_at: new Date().toISOString() }).execute();
    expect(feed.version()).not.toBe(before);
    const after = feed.version();
    expect(feed.version()).toBe(after); // stable until the next foreign commit
  });
});

describe.runIf(TEST_DIALECT === 'postgres')('PostgreSQL change feed (LISTEN/NOTIFY)', () => {
  const pgFeed = (feed: ChangeFeed) => feed as ChangeFeed & PostgresFeedState;

  /** A plain connection to the test database, as another process would have. */
  async function otherClient(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: database.url, connectionTimeoutMillis: 5000 });
    client.on('error', () => {});
    await client.connect();
    return client;
  }

  it('is listening once openDatabase resolves, and stable while nothing is announced', () => {
    const feed = pgFeed(changeFeedOf(db));
    expect(feed.listening).toBe(true);
    expect(feed.backendPid).toEqual(expect.any(Number));
    expect(feed.version()).toBe(feed.version());
  });

  it('moves on a NOTIFY from another connection', async () => {
    const feed = changeFeedOf(db);
    const before = feed.version();
    const other = await otherClient();
    try {
      await other.query("select pg_notify('keyframe_changes', 'api_keys')");
    } finally {
      await other.end();
    }
    await until('the feed hears the notification', () => feed.version() !== before, 1000);
  });

  it("hears an announcement when its transaction commits, never before, and never a rolled-back one's", async () => {
    const feed = changeFeedOf(db);
    const other = await database.secondConnection();
    const barrier = await otherClient();
    try {
      const v0 = feed.version();
      // Rolled back: never delivered. The barrier notification is sent after it, so once the
      // barrier is heard, the rolled-back one would have been heard too (delivery is in commit order).
      await other
        .transaction()
        .execute(async (trx) => {
          await announceKeyChange(trx);
          throw new Error('roll back');
        })
        .catch(() => {});
      await barrier.query("select pg_notify('keyframe_changes', 'barrier')");
      await until('the barrier is heard', () => feed.version() === v0 + 1, 1000);

      // Announced, not yet committed: a barrier committed meanwhile is heard alone.
      let commit!: () => void;
      const committed = other.transaction().execute(async (trx) => {
        await announceKeyChange(trx);
        await new Promise<void>((resolve) => (commit = resolve));
      });
      await until('the transaction has announced', () => commit !== undefined, 1000);
      await barrier.query("select pg_notify('keyframe_changes', 'barrier')");
      await until('the second barrier is heard', () => feed.version() >= v0 + 2, 1000);
      expect(feed.version()).toBe(v0 + 2);

      commit();
      await committed;
      await until('the committed announcement is heard', () => feed.version() === v0 + 3, 1000);
    } finally {
      await barrier.end();
      await other.destroy();
    }
  });

  it('a dropped feed connection empties the cache on the next turn, and the feed comes back', async () => {
    const keys = new ApiKeys(db);
    const created = await keys.createKey({ userId: 'alice' });
    await keys.authenticate(`Bearer ${created.key}`);
    await nextTurn();
    // Revoked behind the cache's back (no announcement): still served from the cache, which shows it is in use.
    const other = await database.secondConnection();
    try {
      await other.updateTable('api_keys').set({ revoked_at: new Date().toISOString() }).where('id', '=', created.id).execute();
      await expect(keys.authenticate(`Bearer ${created.key}`)).resolves.toMatchObject({ keyId: created.id });

      const feed = pgFeed(changeFeedOf(db));
      const pid = feed.backendPid!;
      await sql`select pg_terminate_backend(${pid})`.execute(other);
      await until('the feed notices its connection is gone', () => feed.backendPid !== pid, 5000);
      await nextTurn();
      await expect(keys.authenticate(`Bearer ${created.key}`)).rejects.toMatchObject({ code: 'unauthorized' });

      await Promise.race([feed.whenListening(), sleep(10_000).then(() => Promise.reject(new Error('feed did not reconnect within 10 s')))]);
      expect(feed.backendPid).not.toBe(pid);
    } finally {
      await other.destroy();
    }
  });

  it('while blind the version moves on every read, so the cache keeps nothing until the feed is back', async () => {
    const lines: string[] = [];
    const url = new URL(database.url!);
    url.password = 'not-a-real-s3cret'; // trust auth ignores it; it must never be logged
    const feed = await openPostgresChangeFeed(url.toString(), { log: (l) => lines.push(l), minBackoffMs: 200, maxBackoffMs: 200 });
    const killer = await otherClient();
    try {
      const cache = new LiveKeyCache(() => feed.version());
      await nextTurn();
      cache.remember(cache.beginLookup(), 'live', principal);
      expect(cache.get('live')).toBe(principal);

      const pid = feed.backendPid!;
      await killer.query('select pg_terminate_backend($1)', [pid]);
      await until('the feed goes blind', () => !feed.listening, 5000);
      // Synchronous from here to the asserts: the feed cannot reconnect in between.
      expect(feed.listening).toBe(false);
      expect(feed.version()).not.toBe(feed.version());
      await nextTurn();
      expect(feed.listening).toBe(false); // a reconnect waits at least 200 ms
      cache.beginLookup();
      expect(cache.get('live')).toBeUndefined();
      cache.remember(cache.beginLookup(), 'during', principal);
      expect(cache.get('during')).toBeUndefined();

      await Promise.race([feed.whenListening(), sleep(10_000).then(() => Promise.reject(new Error('feed did not reconnect within 10 s')))]);
      await nextTurn();
      cache.remember(cache.beginLookup(), 'after', principal);
      expect(cache.get('after')).toBe(principal);

      expect(lines.some((l) => /change feed lost/.test(l))).toBe(true);
      expect(lines.some((l) => /listening again/.test(l))).toBe(true);
      expect(lines.join('\n')).not.toContain('s3cret');
      expect(lines.join('\n')).not.toContain(database.url!);
    } finally {
      await killer.end();
      await feed.close();
    }
  });

  it('starts blind when PostgreSQL cannot be reached, keeps trying, and logs no password', async () => {
    const lines: string[] = [];
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    const feed = await openPostgresChangeFeed('postgres://postgres:hunter2-s3cret@127.0.0.1:1/nowhere', {
      log: (l) => lines.push(l),
      minBackoffMs: 20,
      maxBackoffMs: 40,
    });
    try {
      expect(feed.listening).toBe(false);
      expect(feed.version()).not.toBe(feed.version());
      await sleep(200); // a few retries
      expect(lines.length).toBe(1); // one line per outage, not one per attempt
      expect(lines[0]).toMatch(/change feed lost/);
      expect(lines.join('\n')).not.toContain('hunter2');
    } finally {
      await feed.close();
    }
  });

  it("db.destroy() closes the feed's connection", async () => {
    const other = await otherClient();
    try {
      const pid = (changeFeedOf(db) as ChangeFeed & PostgresFeedState).backendPid!;
      const alive = async () => (await other.query('select 1 from pg_stat_activity where pid = $1', [pid])).rowCount === 1;
      expect(await alive()).toBe(true);
      await db.destroy();
      await until('the feed backend is gone', async () => !(await alive()), 5000);
    } finally {
      await other.end();
    }
  });
});
