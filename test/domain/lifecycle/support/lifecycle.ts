import type { Db } from '../../../../src/db/database.js';
import type { Clock } from '../../../../src/domain/clock.js';
import { UploadCleanup, type CleanupOptions, type CleanupResult } from '../../../../src/domain/lifecycle/cleanup.js';
import type { RetentionPolicy } from '../../../../src/domain/lifecycle/policy.js';
import type { ObjectStore } from '../../../../src/storage/object-store.js';

/** A clock the test moves: time passes only when told. */
export class MovableClock implements Clock {
  private at: number;

  constructor(start: Date = new Date()) {
    this.at = start.getTime();
  }

  now(): Date {
    return new Date(this.at);
  }

  set(to: Date | string | number): void {
    this.at = new Date(to).getTime();
  }

  advance(seconds: number): void {
    this.at += seconds * 1000;
  }
}

export const DAY = 86_400;

/** The defaults of docs/lifecycle.md with the periods a test names. */
export function policy(overrides: Partial<RetentionPolicy> = {}): RetentionPolicy {
  return { unusedSeconds: 7 * DAY, usedSeconds: null, videosSeconds: null, expiryGraceSeconds: 60, ...overrides };
}

/**
 * One run of a cleanup on the test's clock. The test server runs its own cleanup once at start
 * (then every interval), on the same lease: a run that found it held is tried again, so that the
 * result is this cleanup's own work.
 */
export async function runCleanup(db: Db, store: ObjectStore, options: Omit<CleanupOptions, 'intervalMs'>): Promise<CleanupResult> {
  const cleanup = new UploadCleanup(db, store, options);
  for (let attempt = 0; ; attempt++) {
    const result = await cleanup.runOnce();
    if (result.ran) return result;
    if (attempt === 100) throw new Error('the cleanup lease stayed held');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A generation of `userId` naming `keys`, written as Generations.create writes it (the row,
 * its references, the uploads' last use), in the state the test needs.
 */
export async function addGeneration(
  db: Db,
  id: string,
  userId: string,
  keys: string[],
  state: { status: 'generating' | 'completed' | 'failed'; createdAt: Date; completedAt?: Date; videoKey?: string | null },
): Promise<void> {
  const createdAt = state.createdAt.toISOString();
  await db
    .insertInto('generations')
    .values({
      id,
      user_id: userId,
      model_name: 'keyframe-local',
      prompt: 'p',
      params: JSON.stringify({ references: keys.map((key) => ({ field: 'startFrameKey', key })) }),
      template_id: null,
      webhook_url: null,
      status: state.status,
      error: state.status === 'failed' ? 'Generation failed: test' : null,
      attempts: 1,
      video_key: state.videoKey ?? null,
      created_at: createdAt,
      started_at: createdAt,
      completed_at: state.completedAt?.toISOString() ?? null,
    })
    .execute();
  if (keys.length > 0) await db.insertInto('generation_references').values(keys.map((s3_key) => ({ generation_id: id, s3_key }))).execute();
  for (const key of keys) await db.updateTable('uploads').set({ last_used_at: createdAt }).where('s3_key', '=', key).execute();
}

/** Settles a generation as the worker would. */
export async function settle(db: Db, id: string, status: 'completed' | 'failed', at: Date, videoKey: string | null = null): Promise<void> {
  await db
    .updateTable('generations')
    .set({ status, completed_at: at.toISOString(), video_key: videoKey, error: status === 'failed' ? 'Generation failed: test' : null })
    .where('id', '=', id)
    .execute();
}
