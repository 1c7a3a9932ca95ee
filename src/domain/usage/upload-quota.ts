import { dialectOf, type Db } from '../../db/database.js';
import { rateLimited } from '../errors.js';
import type { GrantCheck, SharedGrants } from './shared-grants.js';
import { readUploadUsage, type UploadUsage } from './upload-usage.js';

export interface UploadQuotaLimits {
  /** Live, unused upload URLs per user. */
  pendingUploads: number;
  /** Stored plus reserved bytes per user. */
  storedBytes: number;
}

export interface UploadQuotaOptions {
  /** See DISK_RESERVATION_GRACE_MS: how long an expired pending upload keeps its reservation. */
  reservationGraceMs: number;
  /** Lifetime of an upload URL: when a refused user can expect a pending slot to free, at the latest. */
  urlTtlSeconds: number;
  /** A ledger older than this is re-derived before it is used (default 2 s; see `maxAgeMs`). */
  maxAgeMs?: number;
  /** Users whose ledgers are kept (default 10 000); the least recently derived idle ones are dropped first. */
  maxUsers?: number;
  /** Clock, for tests of the ledger itself; default Date.now. */
  now?: () => number;
  /**
   * In a cluster, every node's grants (src/redis/upload-grants.ts): each presign is then checked
   * and recorded there instead of in this process's ledger. Without it, the ledger alone.
   */
  shared?: SharedGrants;
}

interface Amount {
  count: number;
  bytes: number;
}

/**
 * One user's ledger: what the database said at `derivedAt`, plus what this
 * process granted since. `committed` are presigns whose row is committed but
 * that the snapshot may not include; `inflight` are granted presigns whose
 * row is not committed yet. Both only ever add, so between derivations the
 * ledger can only over-count (arrivals, rejections and expiries that lowered
 * the real figure are picked up at the next derivation). With shared grants
 * only `base` and `since` count: the grants are counted in the shared grants.
 */
export interface Ledger {
  readonly userId: string;
  base: UploadUsage;
  derivedAt: number;
  /** Wall time the last derivation took, in ms: how often this user's can be afforded. */
  costMs: number;
  committed: Amount;
  inflight: Amount;
  deriving: Promise<void> | null;
  /** With shared grants: the user's shared clock, read before the last derivation's query (else unused). */
  since: number;
}

/** A grant recorded in the shared grants: the user and its name there. */
interface SharedGrant {
  readonly userId: string;
  readonly member: string;
}

/**
 * What a reservation hands back to `settle`: the user's ledger when the grant is in this process's
 * memory, or the grant's name in the shared grants. Opaque to the caller.
 */
export type Grant = Ledger | SharedGrant;

/**
 * Derivations that take under this are cheap enough to run before every refusal.
 * On SQLite a derivation is work on this process's thread; on PostgreSQL most of
 * its time is two round trips to the server (about 0.4 ms each on loopback, more
 * across a network) during which this process serves other requests, so there the
 * bar is set by what a round trip costs, not by the work.
 */
const CHEAP_DERIVATION_MS = { sqlite: 1, postgres: 5 } as const;
/** An expensive derivation may use at most 1/DUTY_FACTOR of the time: it is repeated no sooner than DUTY_FACTOR × its cost. */
const DUTY_FACTOR = 100;

/**
 * The pending-uploads and stored-bytes quotas of presign, without an aggregate
 * over the user's rows per request.
 *
 * Each user gets an in-process ledger, derived from the database by two index
 * ranges (`readUploadUsage`) and then adjusted by this process's own presigns.
 * A presign is checked against the ledger in memory (a Map lookup and a few
 * additions: `tryReserve`), and reserves its bytes there synchronously, before
 * any await, so concurrent presigns of one user can never both take the last
 * slot.
 *
 * The ledger is re-derived once it is older than `maxAgeMs` (so arrivals,
 * rejections, expiries and other processes are picked up), and again before a
 * refusal (so a refusal is never based on a stale over-count), each no more
 * often than 100 × what the derivation last cost, which bounds the time spent
 * on users with very many stored rows to about 1%.
 *
 * Error bounds: the ledger never under-counts what this process granted
 * (rows in flight and rows committed after a snapshot's query began stay
 * counted, perhaps twice). It over-counts by the uploads that arrived,
 * expired or were rejected since the last derivation (at most `maxAgeMs` old,
 * and never when refusing). Without shared grants it can under-count only
 * presigns granted by another process on the same database since the last
 * derivation: at most what that process grants in `maxAgeMs` (one server per
 * SQLite file is the supported set-up). A restart forgets nothing: the first
 * presign of each user derives afresh.
 *
 * With shared grants (a cluster: `options.shared`), the ledger keeps only the
 * database-derived base, and every presign is one atomic check-and-record in
 * the shared grants, against the base plus every node's grants that the base
 * may lack: those still in flight, and those committed after the reading of
 * the shared clock that preceded the base's query. So no node under-counts
 * another's; the over-count is that of the base, plus the grants that commit
 * while the query starts or whose settle has not reached the shared grants
 * yet (counted twice, for milliseconds). Before a refusal the base is derived
 * afresh, as in-process.
 */
export class UploadQuota {
  private readonly ledgers = new Map<string, Ledger>();
  private readonly maxAgeMs: number;
  private readonly maxUsers: number;
  private readonly now: () => number;
  private readonly cheapDerivationMs: number;

  constructor(
    private readonly db: Db,
    private readonly limits: UploadQuotaLimits,
    private readonly options: UploadQuotaOptions,
  ) {
    this.maxAgeMs = options.maxAgeMs ?? 2000;
    this.maxUsers = options.maxUsers ?? 10_000;
    this.now = options.now ?? Date.now;
    this.cheapDerivationMs = CHEAP_DERIVATION_MS[dialectOf(db)];
  }

  /**
   * The hot path: grants `bytes` to the user from a fresh ledger, in memory.
   * Null when that cannot be decided without the database (no ledger, a stale
   * one, or one that would refuse): then call `reserve`.
   */
  tryReserve(userId: string, bytes: number): Grant | null {
    // With shared grants nothing is decided in memory: every presign asks them (`reserve`).
    if (this.options.shared !== undefined) return null;
    const ledger = this.ledgers.get(userId);
    if (ledger === undefined || this.now() - ledger.derivedAt > this.maxAgeMs || this.refusal(ledger, bytes) !== null) return null;
    ledger.inflight.count += 1;
    ledger.inflight.bytes += bytes;
    return ledger;
  }

  /** Grants `bytes` to the user, deriving the ledger when needed; throws 429 `rate_limited` when a quota is used up. */
  async reserve(userId: string, bytes: number): Promise<Grant> {
    let ledger = this.ledgers.get(userId);
    if (ledger === undefined) ledger = this.add(userId);
    let fresh = false;
    if (this.now() - ledger.derivedAt > this.maxAgeMs) {
      await this.derive(ledger);
      fresh = true;
    }
    if (this.options.shared !== undefined) return this.reserveShared(this.options.shared, ledger, bytes, fresh);
    if (!fresh && this.refusal(ledger, bytes) !== null && this.mayRederive(ledger)) await this.derive(ledger);
    const refusal = this.refusal(ledger, bytes);
    if (refusal !== null) throw refusal;
    ledger.inflight.count += 1;
    ledger.inflight.bytes += bytes;
    return ledger;
  }

  /** Settles a grant: `committed` when its row is in the database, false when the presign failed and reserved nothing. */
  settle(grant: Grant, bytes: number, committed: boolean): void {
    if ('member' in grant) {
      this.options.shared!.settle(grant.userId, grant.member, committed);
      return;
    }
    const ledger = grant;
    ledger.inflight.count -= 1;
    ledger.inflight.bytes -= bytes;
    if (committed) {
      ledger.committed.count += 1;
      ledger.committed.bytes += bytes;
    }
  }

  /**
   * Something lowered the user's usage in this process (an upload arrived, so a pending URL is used):
   * the next presign derives the ledger afresh instead of refusing on the over-count.
   */
  markStale(userId: string): void {
    const ledger = this.ledgers.get(userId);
    if (ledger) ledger.derivedAt = -Infinity;
  }

  /** The ledger's view of a user's usage (for tests and diagnostics), or null when this process has none; with shared grants, its base only. */
  view(userId: string): UploadUsage | null {
    const ledger = this.ledgers.get(userId);
    if (!ledger) return null;
    const extra = ledger.committed.count + ledger.inflight.count;
    return {
      ...ledger.base,
      pendingUploads: ledger.base.pendingUploads + extra,
      reservedBytes: ledger.base.reservedBytes + ledger.committed.bytes + ledger.inflight.bytes,
    };
  }

  /**
   * One check-and-record in the shared grants, against a base derived again (once) before a refusal,
   * as in-process, and whenever the shared grants no longer hold what an old base lacks (`stale`).
   */
  private async reserveShared(shared: SharedGrants, ledger: Ledger, bytes: number, fresh: boolean): Promise<SharedGrant> {
    let outcome = await shared.tryGrant(this.grantCheck(ledger, bytes));
    if (outcome.kind === 'stale' || (outcome.kind === 'refused' && !fresh && this.mayRederive(ledger))) {
      await this.derive(ledger);
      outcome = await shared.tryGrant(this.grantCheck(ledger, bytes));
    }
    switch (outcome.kind) {
      case 'granted':
        return { userId: ledger.userId, member: outcome.grant };
      case 'refused':
        throw this.refusalOf(ledger.base, outcome.pendingUploads, outcome.usedBytes, bytes)!;
      case 'stale':
        // Only a derivation that outlasted what the shared grants keep (a minute) gets here.
        throw new Error(`upload quota: the usage of ${ledger.userId} took too long to derive to be checked against the shared grants`);
    }
  }

  private grantCheck(ledger: Ledger, bytes: number): GrantCheck {
    return {
      userId: ledger.userId,
      bytes,
      since: ledger.since,
      basePending: ledger.base.pendingUploads,
      baseUsedBytes: ledger.base.storedBytes + ledger.base.reservedBytes,
      maxPending: this.limits.pendingUploads,
      maxBytes: this.limits.storedBytes,
    };
  }

  private refusal(ledger: Ledger, bytes: number): Error | null {
    const pending = ledger.base.pendingUploads + ledger.committed.count + ledger.inflight.count;
    const used = ledger.base.storedBytes + ledger.base.reservedBytes + ledger.committed.bytes + ledger.inflight.bytes;
    return this.refusalOf(ledger.base, pending, used, bytes);
  }

  /** The 429 for `pending` upload URLs and `used` bytes (the base's included), or null when `bytes` more fit. */
  private refusalOf(base: UploadUsage, pending: number, used: number, bytes: number): Error | null {
    if (pending >= this.limits.pendingUploads) {
      const earliest = base.earliestPendingExpiry;
      const retry = earliest === null ? this.options.urlTtlSeconds : (Date.parse(earliest) - this.now()) / 1000;
      return rateLimited(
        // No count: across nodes the check counts grants whose rows may already be in the base (an
        // over-count by design, never an under-count), so the exact figure is not known here.
        `Too many pending uploads: the ${this.limits.pendingUploads} allowed per user are all in use (unused upload URLs, or presigns under way); ` +
          'upload to them or let them expire',
        Math.min(Math.max(retry, 1), this.options.urlTtlSeconds),
      );
    }
    if (used + bytes > this.limits.storedBytes) {
      const reserved = used - base.storedBytes;
      return rateLimited(
        `Storage quota exceeded: ${base.storedBytes} bytes stored and ${reserved} reserved by pending uploads; ` +
          `this upload would reserve ${bytes} more (limit ${this.limits.storedBytes} bytes per user)`,
        // Reservations free as their URLs are used or expire; stored bytes do not free by waiting.
        reserved > 0 ? this.options.urlTtlSeconds : 3600,
      );
    }
    return null;
  }

  private mayRederive(ledger: Ledger): boolean {
    return ledger.costMs < this.cheapDerivationMs || this.now() - ledger.derivedAt >= DUTY_FACTOR * ledger.costMs;
  }

  private add(userId: string): Ledger {
    if (this.ledgers.size >= this.maxUsers) {
      // Map order is insertion order: the oldest first. An idle ledger can be dropped at no risk:
      // everything it counted is committed, so the next derivation reads it back.
      for (const [id, l] of this.ledgers) {
        if (l.inflight.count === 0 && l.deriving === null) {
          this.ledgers.delete(id);
          break;
        }
      }
    }
    const ledger: Ledger = {
      userId,
      base: { pendingUploads: 0, reservedBytes: 0, storedBytes: 0, earliestPendingExpiry: null },
      derivedAt: -Infinity,
      costMs: 0,
      committed: { count: 0, bytes: 0 },
      inflight: { count: 0, bytes: 0 },
      deriving: null,
      since: -Infinity,
    };
    this.ledgers.set(userId, ledger);
    return ledger;
  }

  /** Replaces the ledger's snapshot; one derivation per user at a time, shared by whoever waits. */
  private derive(ledger: Ledger): Promise<void> {
    ledger.deriving ??= (async () => {
      // Grants committed before the query starts are in its snapshot: subtract exactly those
      // afterwards. Grants committing while it runs may or may not be: they stay counted.
      const taken = { ...ledger.committed };
      const started = this.now();
      const t0 = performance.now();
      try {
        // Read before the query starts: a grant whose row the snapshot lacks commits after this, or is still in flight.
        const since = this.options.shared === undefined ? -Infinity : await this.options.shared.clock(ledger.userId);
        const base = await readUploadUsage(this.db, ledger.userId, new Date(started), this.options.reservationGraceMs);
        ledger.base = base;
        ledger.since = since;
        ledger.committed.count -= taken.count;
        ledger.committed.bytes -= taken.bytes;
        ledger.costMs = performance.now() - t0;
        ledger.derivedAt = started;
      } finally {
        ledger.deriving = null;
      }
    })();
    return ledger.deriving;
  }
}
