import type { LimitsConfig } from '../../config.js';
import type { Db } from '../../db/database.js';
import { readGenerationUsage } from './generation-usage.js';
import { readUploadUsage } from './upload-usage.js';

/** `keyframe users show`: one user's usage next to each limit, read from the database. */
export interface UserUsageReport {
  user_id: string;
  pending_uploads: { used: number; limit: number };
  /** Stored bytes plus those reserved by pending uploads, against the one storage quota. */
  stored_bytes: { stored: number; reserved: number; used: number; limit: number };
  active_generations: { used: number; limit: number };
  generations_last_hour: { used: number; limit: number };
  /** Counted by the API nodes (in their memory, or in Redis in a cluster), not in the database: only the limit is known here. */
  presigns_per_minute: { limit: number };
}

/** Null when there is no such user. */
export async function readUserUsage(db: Db, userId: string, limits: LimitsConfig, reservationGraceMs: number, now = new Date()): Promise<UserUsageReport | null> {
  const user = await db.selectFrom('users').select('id').where('id', '=', userId).executeTakeFirst();
  if (!user) return null;
  const uploads = await readUploadUsage(db, userId, now, reservationGraceMs);
  const generations = await readGenerationUsage(db, userId, now);
  return {
    user_id: userId,
    pending_uploads: { used: uploads.pendingUploads, limit: limits.pendingUploads },
    stored_bytes: {
      stored: uploads.storedBytes,
      reserved: uploads.reservedBytes,
      used: uploads.storedBytes + uploads.reservedBytes,
      limit: limits.storedBytes,
    },
    active_generations: { used: generations.active, limit: limits.activeGenerations },
    generations_last_hour: { used: generations.lastHour, limit: limits.generationsPerHour },
    presigns_per_minute: { limit: limits.presignsPerMinute },
  };
}
