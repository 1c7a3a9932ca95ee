import type { GenerationStatus } from '../../contract/generations.js';
import type { GenerationsTable } from '../../db/schema.js';
import type { ObjectStore } from '../../storage/object-store.js';
import { downloadHeaders } from '../media-types.js';

/** How long a `video_url` stays valid, as Prism documents. */
export const VIDEO_URL_TTL_SECONDS = 3600;

/** What a `video_url` answers with: an MP4 a browser plays in place (and never sniffs as anything else). */
const VIDEO_DOWNLOAD = downloadHeaders('video/mp4');

/** Get Generation Status's body (and a webhook's) is the contract's (src/contract/generations.ts). */
export type { GenerationStatus };

/**
 * The status body of a generation; `video_url` is a fresh presigned GET when it is completed,
 * and null again once the retention policy marked the video for deletion (docs/lifecycle.md).
 */
export async function statusBody(row: GenerationsTable, store: ObjectStore): Promise<GenerationStatus> {
  const completed = row.status === 'completed';
  return {
    id: row.id,
    status: row.status,
    template_id: row.template_id,
    video_url: completed && row.video_key && row.video_delete_marked_at === null ? await store.presignGet(row.video_key, VIDEO_URL_TTL_SECONDS, VIDEO_DOWNLOAD) : null,
    // Keyframe has no public share pages.
    share_url: null,
    created_at: row.created_at,
    completed_at: completed ? row.completed_at : null,
    error: row.status === 'failed' ? row.error : null,
  };
}
