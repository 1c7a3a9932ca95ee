import { performance } from 'node:perf_hooks';
import { changeFeedOf } from '../db/change-feed.js';
import type { Db } from '../db/database.js';
import type { Principal } from './principal.js';

/** Beyond this many live keys the cache starts over; each key costs one lookup to come back. */
const MAX_CACHED_KEYS = 10_000;

/**
 * No entry is served once it is this old, whatever the change feed says: the
 * safety net for a notification that never arrived (a half-open LISTEN
 * connection, a writer that changed `api_keys` without announcing it).
 * Documented in docs/security.md; each live key costs one indexed lookup per
 * this period.
 */
export const MAX_KEY_CACHE_AGE_MS = 10_000;

/**
 * Live API keys seen lately, by hash, so an authenticated request needs no
 * database read. It is emptied whenever a key may have changed: on every
 * revocation through this process; whenever the database's change feed moves
 * (src/db/change-feed.ts: on SQLite another connection committed, on
 * PostgreSQL another process announced a key change, or the feed's connection
 * is down); and at the latest MAX_KEY_CACHE_AGE_MS after it began filling.
 */
export class LiveKeyCache {
  private readonly principals = new Map<string, Principal>();
  /** Bumped by every emptying; a lookup that began before one must not refill the cache. */
  private generation = 0;
  /** When the current generation began (performance.now()): every entry in it was read after that. */
  private generationStartedAt = performance.now();
  private seenExternalVersion: number;
  /** Whether the external version was read in the current event-loop turn (see beginLookup). */
  private checkedThisTurn = false;
  private readonly maxAgeMs: number;

  constructor(
    private readonly externalVersion: () => number,
    options: { maxAgeMs?: number } = {},
  ) {
    this.maxAgeMs = options.maxAgeMs ?? MAX_KEY_CACHE_AGE_MS;
    this.seenExternalVersion = externalVersion();
  }

  /** One cache per database connection, shared by every ApiKeys on it. */
  static of(db: Db): LiveKeyCache {
    let cache = caches.get(db);
    if (!cache) {
      const feed = changeFeedOf(db);
      caches.set(db, (cache = new LiveKeyCache(() => feed.version())));
    }
    return cache;
  }

  /**
   * Call before reading a key's row; hand the result to `remember`.
   *
   * The external version (and the age of the cache) is read once per
   * event-loop turn (under load a turn handles dozens of requests, and on
   * SQLite the read takes the WAL read lock). That is still "at once": a
   * request handled in this turn was received at the start of this turn at the
   * latest, so a change the feed had registered before the request was sent
   * had been registered before this turn's read.
   */
  beginLookup(): number {
    if (!this.checkedThisTurn) {
      this.checkedThisTurn = true;
      setImmediate(() => (this.checkedThisTurn = false));
      const version = this.externalVersion();
      if (version !== this.seenExternalVersion) {
        this.seenExternalVersion = version;
        this.clear();
      } else if (performance.now() - this.generationStartedAt >= this.maxAgeMs) {
        // Every entry was read after the generation began, so none is older than this.
        this.clear();
      }
    }
    return this.generation;
  }

  get(hash: string): Principal | undefined {
    return this.principals.get(hash);
  }

  /** Caches a live key read after `beginLookup` returned `lookup`, unless the cache was emptied since. */
  remember(lookup: number, hash: string, principal: Principal): void {
    if (lookup !== this.generation || this.externalVersion() !== this.seenExternalVersion) return;
    if (this.principals.size >= MAX_CACHED_KEYS) this.principals.clear();
    this.principals.set(hash, principal);
  }

  clear(): void {
    this.principals.clear();
    this.generation++;
    this.generationStartedAt = performance.now();
  }
}

const caches = new WeakMap<Db, LiveKeyCache>();
