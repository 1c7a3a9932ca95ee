import { externalWriteVersion, type Db } from '../db/database.js';
import type { Principal } from './api-keys.js';

/** Beyond this many live keys the cache starts over; each key costs one lookup to come back. */
const MAX_CACHED_KEYS = 10_000;

/**
 * Live API keys seen lately, by hash, so an authenticated request needs no
 * database read. It is emptied whenever a key may have changed: on every
 * revocation through this process, and whenever another connection (the CLI
 * revoking a key) has committed. A revoked key therefore fails on the very
 * next request, as it did when every request read the row.
 */
export class LiveKeyCache {
  private readonly principals = new Map<string, Principal>();
  /** Bumped by every emptying; a lookup that began before one must not refill the cache. */
  private generation = 0;
  private seenExternalVersion: number;
  /** Whether the external version was read in the current event-loop turn (see beginLookup). */
  private checkedThisTurn = false;

  constructor(private readonly externalVersion: () => number) {
    this.seenExternalVersion = externalVersion();
  }

  /** One cache per database connection, shared by every ApiKeys on it. */
  static of(db: Db): LiveKeyCache {
    let cache = caches.get(db);
    if (!cache) caches.set(db, (cache = new LiveKeyCache(externalWriteVersion(db))));
    return cache;
  }

  /**
   * Call before reading a key's row; hand the result to `remember`.
   *
   * The external version is read once per event-loop turn (under load a turn
   * handles dozens of requests, and the read takes SQLite's WAL read lock). That
   * is still "at once": a request handled in this turn was received at the start
   * of this turn at the latest, so a revocation that had committed before the
   * request was sent had committed before this turn's read.
   */
  beginLookup(): number {
    if (!this.checkedThisTurn) {
      this.checkedThisTurn = true;
      setImmediate(() => (this.checkedThisTurn = false));
      const version = this.externalVersion();
      if (version !== this.seenExternalVersion) {
        this.seenExternalVersion = version;
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
  }
}

const caches = new WeakMap<Db, LiveKeyCache>();
