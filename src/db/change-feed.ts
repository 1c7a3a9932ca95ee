import type SQLite from 'better-sqlite3';
import { PostgresAdapter, sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.js';
import { withoutPassword } from './postgres.js';

type AnyDb = Kysely<Database>;

/**
 * A number that changes whenever another process may have changed rows that
 * this process caches (API keys). Readers compare it with the value they saw
 * last and drop their cache when it moved. `version()` is synchronous and
 * cheap: the live-key cache reads it once per event-loop turn.
 *
 * - SQLite: `PRAGMA data_version`, which moves whenever *another* connection
 *   committed anything to the file (writes through this connection do not
 *   move it; their writers empty caches themselves).
 * - PostgreSQL: a counter bumped by every `NOTIFY keyframe_changes`, heard on
 *   one dedicated connection (`LISTEN`). While that connection is down (or not
 *   yet up) the feed is blind, and then every read returns a new number, so a
 *   cache keyed on it stays empty until the feed is back.
 */
export interface ChangeFeed {
  version(): number;
  /**
   * Calls `listener` on every `NOTIFY <channel>` (PostgreSQL; the job queue's
   * wake-up), and once each time the feed (re)starts listening, since anything
   * may have been sent while it was not. On SQLite it never calls: there is no
   * NOTIFY, and such readers poll. Returns the function that stops listening.
   */
  listen(channel: string, listener: () => void): () => void;
  close(): Promise<void>;
}

/** The channel writers NOTIFY on and the feed LISTENs to. */
export const CHANGE_CHANNEL = 'keyframe_changes';

const feeds = new WeakMap<AnyDb, ChangeFeed>();

/**
 * Attaches `feed` to `db` (openDatabase does this) and makes `db.destroy()`
 * close the feed before the database's own connections.
 */
export function registerChangeFeed(db: AnyDb, feed: ChangeFeed): void {
  if (feeds.has(db)) throw new Error('this database already has a change feed');
  feeds.set(db, feed);
  const destroy = db.destroy.bind(db);
  db.destroy = async () => {
    await feed.close();
    await destroy();
  };
}

/** The change feed of a database opened by openDatabase. */
export function changeFeedOf(db: AnyDb): ChangeFeed {
  const feed = feeds.get(db);
  if (!feed) throw new Error('changeFeedOf needs a database opened by openDatabase');
  return feed;
}

/**
 * Tells every other process on the database that API keys changed. Call it
 * inside the transaction that changes them: on PostgreSQL the notification is
 * delivered when (and only if) that transaction commits. On SQLite it does
 * nothing: the commit itself moves every other connection's `data_version`.
 */
export async function announceKeyChange(db: AnyDb): Promise<void> {
  if (!(db.getExecutor().adapter instanceof PostgresAdapter)) return;
  await sql`select pg_notify(${CHANGE_CHANNEL}, 'api_keys')`.execute(db);
}

/** SQLite's feed: the connection's `PRAGMA data_version` (no table access; closing is the database's job). */
export function sqliteChangeFeed(sqlite: SQLite.Database): ChangeFeed {
  const dataVersion = sqlite.prepare('PRAGMA data_version').pluck();
  return {
    version: () => dataVersion.get() as number,
    listen: () => () => {},
    close: async () => {},
  };
}

export interface PostgresChangeFeedOptions {
  /** Where problems are reported: one line when the feed goes blind, one when it is back. Never the URL. */
  log?: (line: string) => void;
  /** Reconnect delays start here and double up to `maxBackoffMs`. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Bound on one connection attempt (TCP connect, start-up and LISTEN). */
  connectTimeoutMs?: number;
}

/**
 * Opens PostgreSQL's feed on its own connection (not one of the pool's: a
 * pooled connection would be handed to queries and lose its LISTEN). Resolves
 * once the first attempt to listen has succeeded or failed; after a failure
 * the feed starts blind and keeps trying, so a server can start while its
 * caches simply stay empty.
 */
export async function openPostgresChangeFeed(url: string, options: PostgresChangeFeedOptions = {}): Promise<ChangeFeed & PostgresFeedState> {
  const feed = new PostgresChangeFeed(url, options);
  await feed.connect();
  return feed;
}

/** What the PostgreSQL feed exposes beyond ChangeFeed, for tests and diagnostics. */
export interface PostgresFeedState {
  /** Whether LISTEN is in place on a live connection right now. */
  readonly listening: boolean;
  /** The server process id of the feed's connection while listening (tests terminate it). */
  readonly backendPid: number | null;
  /** Resolves once the feed is listening again (or closed); for tests, bounded by the caller. */
  whenListening(): Promise<void>;
}

class PostgresChangeFeed implements ChangeFeed, PostgresFeedState {
  private counter = 0;
  private client: pg.Client | null = null;
  private pid: number | null = null;
  private isListening = false;
  private closed = false;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private waiters: (() => void)[] = [];
  /** Channels beyond CHANGE_CHANNEL that `listen` asked for, and who hears them. */
  private readonly channels = new Map<string, Set<() => void>>();
  private readonly log: (line: string) => void;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly connectTimeoutMs: number;

  constructor(
    private readonly url: string,
    options: PostgresChangeFeedOptions,
  ) {
    this.log = options.log ?? ((line) => process.stderr.write(`keyframe: ${line}\n`));
    this.minBackoffMs = options.minBackoffMs ?? 100;
    this.maxBackoffMs = options.maxBackoffMs ?? 5_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
  }

  get listening(): boolean {
    return this.isListening;
  }

  get backendPid(): number | null {
    return this.isListening ? this.pid : null;
  }

  version(): number {
    // Blind: nothing heard can be trusted, so every read is a change.
    if (!this.isListening) this.counter++;
    return this.counter;
  }

  listen(channel: string, listener: () => void): () => void {
    if (!/^[a-z_][a-z0-9_]*$/.test(channel) || channel === CHANGE_CHANNEL) throw new Error(`cannot listen to channel ${channel}`);
    let listeners = this.channels.get(channel);
    if (!listeners) {
      listeners = new Set();
      this.channels.set(channel, listeners);
      // A connection up or coming up: LISTEN on it now (pg queues it until connected; twice is harmless).
      // A failure is a lost connection, which reconnects and LISTENs to every channel.
      this.client?.query(`LISTEN ${channel}`).catch(() => {});
    }
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
    };
  }

  whenListening(): Promise<void> {
    if (this.isListening || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** One attempt to connect and LISTEN; on failure, schedules the next. Never throws. */
  async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({
      connectionString: this.url,
      connectionTimeoutMillis: this.connectTimeoutMs,
      query_timeout: this.connectTimeoutMs,
      keepAlive: true,
      application_name: 'keyframe-change-feed',
    });
    this.client = client;
    // Every notification, whatever its payload, is a change.
    client.on('notification', (message) => {
      if (message.channel === CHANGE_CHANNEL) this.counter++;
      else for (const listener of this.channels.get(message.channel) ?? []) listener();
    });
    // A client without an 'error' listener would crash the process when the server goes away.
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client, null));
    try {
      await client.connect();
      // A background listener never keeps the process alive by itself (as the retry timer does not):
      // a process that forgot to destroy its database must still be able to exit.
      // (pg's Client.unref, which its type definitions lack.)
      (client as pg.Client & { unref?: () => void }).unref?.();
      await client.query(`LISTEN ${CHANGE_CHANNEL}`);
      for (const channel of this.channels.keys()) await client.query(`LISTEN ${channel}`);
      const pid = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
      if (this.client !== client || this.closed) {
        await client.end().catch(() => {});
        return;
      }
      this.pid = pid.rows[0]!.pid;
      // Anything may have changed while the feed was not listening.
      this.counter++;
      this.isListening = true;
      if (this.failures > 0) this.log('change feed listening again; live API keys are cached again');
      this.failures = 0;
      for (const resolve of this.waiters.splice(0)) resolve();
      for (const listeners of this.channels.values()) for (const listener of listeners) listener();
    } catch (err) {
      this.lost(client, err as Error);
    }
  }

  /** The connection failed or ended: blind from now on, and a reconnect after a backoff. */
  private lost(client: pg.Client, err: Error | null): void {
    if (this.client !== client) return; // an old connection's late event
    this.client = null;
    this.pid = null;
    const wasListening = this.isListening;
    this.isListening = false;
    this.counter++;
    client.removeAllListeners('notification');
    client.end().catch(() => {});
    if (this.closed) return;
    if (wasListening || this.failures === 0) {
      // Never the URL: the code and first line of the driver's message, password masked.
      const why = err ? describe(err, this.url) : 'connection ended';
      this.log(`change feed lost (${why}); API keys are read from the database on every request until it reconnects`);
    }
    const delay = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** Math.min(this.failures, 16));
    this.failures++;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, delay);
    this.retryTimer.unref();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.isListening = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    for (const resolve of this.waiters.splice(0)) resolve();
    const client = this.client;
    this.client = null;
    if (client) {
      client.removeAllListeners('notification');
      // Keep an 'error' listener: ending a half-broken connection may still emit one.
      await client.end().catch(() => {});
    }
  }
}

/** The first line of what the driver said, with the URL's password (should it appear) masked. */
function describe(err: Error, url: string): string {
  const code = (err as { code?: string }).code;
  const message = withoutPassword(String(err.message ?? err).split('\n')[0]!, url);
  return code ? `${code}: ${message}` : message;
}
