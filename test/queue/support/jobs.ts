import type { Insertable } from 'kysely';
import type { GenerationsTable } from '../../../src/db/schema.js';

/**
 * A queued generation row as the queue tests insert it: the queue reads only
 * the id, the user, the state columns and created_at; `state` sets a claim.
 */
export function queuedJob(
  id: string,
  userId: string,
  createdAt: Date,
  state: Partial<Pick<GenerationsTable, 'started_at' | 'attempts' | 'worker_id' | 'lease_expires_at'>> = {},
): Insertable<GenerationsTable> {
  return {
    id,
    user_id: userId,
    model_name: 'm',
    prompt: 'p',
    params: '{}',
    template_id: null,
    webhook_url: null,
    status: 'generating',
    error: null,
    attempts: state.attempts ?? 0,
    video_key: null,
    created_at: createdAt.toISOString(),
    started_at: state.started_at ?? null,
    completed_at: null,
    worker_id: state.worker_id ?? null,
    lease_expires_at: state.lease_expires_at ?? null,
  };
}
