/**
 * The port through which the upload quota of every API node sees every node's grants (issue 12):
 * in a cluster, a node's own ledger misses what the others granted since its last derivation, so
 * each presign is checked and recorded in one shared place instead. The Redis adapter is
 * src/redis/upload-grants.ts; without Redis there is none and the quota stays in-process.
 *
 * The contract a grant follows: recorded in flight by `tryGrant`, then settled, once its row is
 * committed (counted from then on only against bases derived before the commit) or once its
 * presign failed (counted no more). Times are on the store's one clock (`clock`), never on a
 * node's, so that nodes whose clocks disagree still agree on what came before a snapshot.
 */
export interface SharedGrants {
  /**
   * The shared clock, in ms. Read before a derivation's database query starts: every grant whose
   * row that snapshot may lack is still in flight then, or commits after this time.
   */
  clock(): Promise<number>;
  /**
   * In one atomic step: counts the user's grants still in flight or committed at or after
   * `check.since`, adds them to the base, and records the new grant (in flight) only when it fits
   * both limits. Throws when the store does not answer (the presign then fails, reserving nothing).
   */
  tryGrant(check: GrantCheck): Promise<GrantOutcome>;
  /**
   * Settles a grant: `committed` when its row is in the database, false when the presign failed.
   * Not awaited (the presign answers without waiting for it); a failure is the adapter's to log,
   * and leaves the grant counted as in flight until its deadline: an over-count, never an under-count.
   */
  settle(userId: string, grant: string, committed: boolean): void;
}

/** What `tryGrant` checks: the node's database-derived base and the new grant. */
export interface GrantCheck {
  userId: string;
  /** The reservation of the new grant, in bytes. */
  bytes: number;
  /** The shared clock's time read before the base's query (`clock`). */
  since: number;
  /** Live, unused upload URLs in the base. */
  basePending: number;
  /** Stored plus reserved bytes in the base. */
  baseUsedBytes: number;
  maxPending: number;
  maxBytes: number;
}

/**
 * `granted`: recorded; `grant` names it for `settle`. `refused`: not recorded; the totals counted
 * (base plus grants, without the new one), for the refusal's message. `stale`: the base is older
 * than the grants the store keeps, so it cannot be completed: derive again.
 */
export type GrantOutcome =
  | { kind: 'granted'; grant: string }
  | { kind: 'refused'; pendingUploads: number; usedBytes: number }
  | { kind: 'stale' };
