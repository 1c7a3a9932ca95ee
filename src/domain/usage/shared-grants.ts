/**
 * The port through which the upload quota of every API node sees every node's grants (issue 12):
 * in a cluster, a node's own ledger misses what the others granted since its last derivation, so
 * each presign is checked and recorded in one shared place instead. The Redis adapter is
 * src/redis/upload-grants.ts; without Redis there is none and the quota stays in-process.
 *
 * A grant is recorded in flight by `tryGrant`, then settled: once its row is committed (from then
 * on it counts only against bases whose clock reading came before the commit) or once its presign
 * failed (it counts no more). Times are readings of a per-user clock the store keeps, never a
 * node's clock, so nodes whose clocks disagree still agree on what came before a snapshot.
 */
export interface SharedGrants {
  /**
   * A reading of the user's clock (opaque: only the store compares readings). Read before a
   * derivation's database query starts: every grant whose row that snapshot lacks is still in
   * flight then, or commits after this reading.
   */
  clock(userId: string): Promise<number>;
  /**
   * In one atomic step: counts the user's grants still in flight or committed after
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
  /** The user's clock, read before the base's query (`clock`). */
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
