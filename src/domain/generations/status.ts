import type { GenerationsTable } from '../../db/schema.js';
import type { ObjectStore } from '../../storage/object-store.js';
import { downloadHeaders } from '../media-types.js';

/** How long a `video_url` stays valid, as Prism documents. */
export const VIDEO_URL_TTL_SECONDS = 3600;

/** What a `video_url` answers with: an MP4 a browser plays in place (and never sniffs as anything else). */
const VIDEO_DOWNLOAD = downloadHeaders('video/mp4');

/** Get Generation Status's body, field for field as Prism documents it. */
export interface GenerationStatusBody {
  id: string;
  status: GenerationsTable['status'];
  template_id: string | null;
  video_url: string | null;
  share_url: string | null;
  created_at: string;
  completed_at: string | null;
  error: string | null;
}

/** The status body of a generation; `video_url` is a fresh presigned GET when it is completed. */
export async function statusBody(row: GenerationsTable, store: ObjectStore): Promise<GenerationStatusBody> {
  const completed = row.status === 'completed';
  return {
    id: row.id,
    status: row.status,
    template_id: row.template_id,
    video_url: completed && row.video_key ? await store.presignGet(row.video_key, VIDEO_URL_TTL_SECONDS, VIDEO_DOWNLOAD) : null,
    // Keyframe has no public share pages.
    share_url: null,
    created_at: row.created_at,
    completed_at: completed ? row.completed_at : null,
    error: row.status === 'failed' ? row.error : null,
  };
}
