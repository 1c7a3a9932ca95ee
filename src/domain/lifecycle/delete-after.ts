import type { Transaction } from 'kysely';
import type { Db } from '../../db/database.js';
import type { Database, UploadsTable } from '../../db/schema.js';
import { plusSeconds, usedReferenceRule, type RetentionPolicy } from './policy.js';

/** What the retention of an upload is worked out from. */
export type RetentionBasis = Pick<UploadsTable, 's3_key' | 'state' | 'created_at' | 'uploaded_at' | 'verified_at' | 'last_used_at'>;

/** When an upload arrived, for its retention: `uploaded_at` (migration 011 fills it for older rows). */
export function arrivedAt(record: RetentionBasis): string {
  return record.uploaded_at ?? record.verified_at ?? record.created_at;
}

/**
 * From when the retention policy removes the upload's object (ISO), or null when it
 * never will as things stand: not stored (pending, expired, rejected, deleted), kept
 * forever, or named by a generation still queued or running. The cleanup job deletes
 * an upload once this is past (src/domain/lifecycle/cleanup.ts), and the status
 * endpoint answers it as `delete_after`.
 *
 * - never used (`last_used_at` null): arrival + the unused retention;
 * - used, with a used retention: the last of its generations' `completed_at` + it;
 * - used, without one: when the last of its generations' videos goes (a failed
 *   generation has none: its `completed_at`), so never while videos are kept forever.
 */
export async function deleteAfter(db: Db | Transaction<Database>, policy: RetentionPolicy, record: RetentionBasis): Promise<string | null> {
  if (record.state !== 'uploaded' && record.state !== 'verified') return null;
  if (record.last_used_at === null) return policy.unusedSeconds === null ? null : plusSeconds(arrivedAt(record), policy.unusedSeconds);
  const rule = usedReferenceRule(policy);
  if (rule === 'forever') return null;
  const users = await db
    .selectFrom('generation_references')
    .innerJoin('generations', 'generations.id', 'generation_references.generation_id')
    .select(['generations.status', 'generations.completed_at', 'generations.video_key'])
    .where('generation_references.s3_key', '=', record.s3_key)
    .execute();
  let latest: string | null = null;
  for (const generation of users) {
    if (generation.status === 'generating' || generation.completed_at === null) return null;
    const until =
      rule === 'after-settled'
        ? plusSeconds(generation.completed_at, policy.usedSeconds!)
        : generation.status === 'completed' && generation.video_key !== null
          ? plusSeconds(generation.completed_at, policy.videosSeconds!)
          : new Date(generation.completed_at).toISOString();
    if (latest === null || until > latest) latest = until;
  }
  // Used (last_used_at set) but no reference row: a generation from before the references were kept, settled long ago.
  return latest ?? plusSeconds(record.last_used_at, rule === 'after-settled' ? policy.usedSeconds! : policy.videosSeconds!);
}
