import { sql } from 'kysely';
import type { Db } from '../../db/database.js';

/** What one user's uploads hold against their quotas, as the database says now. */
export interface UploadUsage {
  /** Upload URLs that are live (not expired) and not yet used. */
  pendingUploads: number;
  /** Bytes reserved by pending uploads: their signed `contentLength`, else their `max_bytes`. */
  reservedBytes: number;
  /** Bytes of uploads whose object arrived (`uploaded` or `verified`). */
  storedBytes: number;
  /** Earliest expiry of a live pending URL (ISO), when there is one: when a pending slot frees at the latest. */
  earliestPendingExpiry: string | null;
}

/**
 * How long after its URL expired a pending upload still reserves its bytes.
 * On the disk store a PUT is checked when it starts and may run for the
 * server's request timeout (an hour), so its object can arrive up to an hour
 * after the expiry; until then the reservation stands. On S3 an object that
 * was PUT stays `pending` until something verifies it, so there a pending row
 * reserves its bytes until it is resolved (`Infinity`).
 */
export const DISK_RESERVATION_GRACE_MS = 3_600_000;

/**
 * Two index ranges over one user's rows (index `uploads_user_state`, migration
 * 005): the pending uploads whose reservation still stands (bounded by the
 * pending-uploads quota plus those expired within the grace), and the stored
 * ones, whose sizes the index itself holds (no table access).
 */
export async function readUploadUsage(db: Db, userId: string, now: Date, reservationGraceMs: number): Promise<UploadUsage> {
  const nowIso = now.toISOString();
  const cutoff = Number.isFinite(reservationGraceMs) ? new Date(now.getTime() - reservationGraceMs).toISOString() : '';
  const pending = await db
    .selectFrom('uploads')
    .select([
      sql<number>`coalesce(sum(case when expires_at > ${nowIso} then 1 else 0 end), 0)`.as('live'),
      sql<number>`coalesce(sum(coalesce(content_length, max_bytes)), 0)`.as('reserved'),
      sql<string | null>`min(case when expires_at > ${nowIso} then expires_at end)`.as('earliest'),
    ])
    .where('user_id', '=', userId)
    .where('state', '=', 'pending')
    .where('expires_at', '>', cutoff)
    .executeTakeFirstOrThrow();
  const stored = await db
    .selectFrom('uploads')
    .select(sql<number>`coalesce(sum(size), 0)`.as('bytes'))
    .where('user_id', '=', userId)
    .where('state', 'in', ['uploaded', 'verified'])
    .executeTakeFirstOrThrow();
  return {
    pendingUploads: Number(pending.live),
    reservedBytes: Number(pending.reserved),
    storedBytes: Number(stored.bytes),
    earliestPendingExpiry: pending.earliest,
  };
}
