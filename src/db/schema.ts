

/** Times are ISO-8601 UTC strings: sortable, and the same on SQLite and PostgreSQL. */
type Timestamp = string;

export interface UsersTable {
  id: string;
  /** Secret that signs this user's webhook deliveries. */
  webhook_secret: string;
  created_at: Timestamp;
}

export interface ApiKeysTable {
  id: string;
  user_id: string;
  /** SHA-256 of the whole key, hex: the key itself is never stored. */
  key_hash: string;
  /** First characters of the key, to recognise it in listings. */
  display_prefix: string;
  /** JSON array of scope names. */
  scopes: string;
  name: string | null;
  created_at: Timestamp;
  revoked_at: Timestamp | null;
}

/**
 * Stored states (docs/lifecycle.md). `expired`: a pending upload whose URL lapsed with
 * nothing stored, or a multipart upload whose lifetime ended (migration 011; older
 * multipart rows say `rejected` with MULTIPART_EXPIRED_REASON). `deleting`: marked for
 * deletion, its object perhaps still there, no longer live; `deleted`: its object
 * removed by the retention policy or found missing, the row kept for audit.
 */
export type UploadState = 'pending' | 'uploaded' | 'verified' | 'rejected' | 'expired' | 'deleting' | 'deleted';

/** Why an upload was deleted (`uploads.deleted_reason`). */
export type DeletedReason = 'unused' | 'used' | 'missing';

export interface UploadsTable {
  s3_key: string;
  user_id: string;
  content_type: string;
  max_bytes: number;
  /** Exact length signed into the upload URL, when the client asked for one. */
  content_length: number | null;
  file_name: string | null;
  state: UploadState;
  size: number | null;
  sha256: string | null;
  /** ETag of the object as it was verified. */
  etag: string | null;
  sniffed_type: string | null;
  reason: string | null;
  /** Media metadata learnt at verification (migration 004): frame size, duration, codecs. */
  media_width: number | null;
  media_height: number | null;
  media_duration_seconds: number | null;
  media_video_codec: string | null;
  media_audio_codec: string | null;
  /**
   * The store's upload id of a multipart upload (migration 009); null for a single PUT.
   * Such a record is `pending` while parts arrive (answered as `uploading`).
   */
  multipart_upload_id: string | null;
  created_at: Timestamp;
  expires_at: Timestamp;
  uploaded_at: Timestamp | null;
  /** When the verdict was reached ("checked at"): set for `verified` and `rejected` alike. */
  verified_at: Timestamp | null;
  /** When the record was stored `expired` (migration 011). */
  expired_at: Timestamp | null;
  /** When it was marked `deleting`; kept once `deleted`. */
  delete_marked_at: Timestamp | null;
  /** When its object was gone and the record `deleted`. */
  deleted_at: Timestamp | null;
  deleted_reason: DeletedReason | null;
  /** When a generation last named it (Generations.create); null: never used. */
  last_used_at: Timestamp | null;
}

export type GenerationStatus = 'generating' | 'completed' | 'failed';

/**
 * One video being made. `params` is the validated request as JSON (see
 * GenerationParams in src/domain/generations/job.ts). While `status` is
 * `generating`, `started_at` null means queued and set means running (under
 * a lease: `worker_id`, `lease_expires_at`).
 */
export interface GenerationsTable {
  id: string;
  user_id: string;
  model_name: string;
  prompt: string;
  params: string;
  template_id: string | null;
  webhook_url: string | null;
  status: GenerationStatus;
  error: string | null;
  /** How many times a worker has started this job. */
  attempts: number;
  /** Object key of the finished video. */
  video_key: string | null;
  created_at: Timestamp;
  started_at: Timestamp | null;
  completed_at: Timestamp | null;
  /** The consumer that claimed the running job (migration 006); null while queued. */
  worker_id: string | null;
  /** Until when that consumer holds the running job; renewed while it runs, recovered once lapsed. */
  lease_expires_at: Timestamp | null;
  /** The video's removal by the retention policy (migration 011): marked, then deleted; `video_url` is null from the mark on. */
  video_delete_marked_at: Timestamp | null;
  video_deleted_at: Timestamp | null;
}

/** The uploads a generation names (migration 011), written with the generation. */
export interface GenerationReferencesTable {
  generation_id: string;
  s3_key: string;
}

/** A named lease: one holder at a time until `expires_at` (the cleanup job's `upload-cleanup`). */
export interface LeasesTable {
  name: string;
  holder: string;
  expires_at: Timestamp;
}

export type WebhookDeliveryState = 'pending' | 'delivered' | 'failed';

/** One webhook delivery of a settled generation (migration 007), sent by whichever worker claims it. */
export interface WebhookDeliveriesTable {
  id: string;
  generation_id: string;
  state: WebhookDeliveryState;
  /** Attempts made so far. */
  attempts: number;
  /** When the next attempt is due. */
  next_attempt_at: Timestamp;
  /** Why the last attempt failed (`HTTP 500`, `ECONNREFUSED`, …). */
  last_error: string | null;
  /** The worker sending it now, and until when its claim holds; null when nobody is. */
  worker_id: string | null;
  lease_expires_at: Timestamp | null;
  created_at: Timestamp;
  delivered_at: Timestamp | null;
}

/** A running `http`-runner job awaiting its model worker's callback (migration 008). */
export interface RunnerCallbacksTable {
  generation_id: string;
  run_id: string;
  /** SHA-256 (hex) of the run's callback secret, which is derived, never stored. */
  secret_sha256: string;
  /** Null while waiting; the accepted outcome as JSON once the callback came. */
  outcome: string | null;
  created_at: Timestamp;
  settled_at: Timestamp | null;
}

export interface Database {
  users: UsersTable;
  api_keys: ApiKeysTable;
  uploads: UploadsTable;
  generations: GenerationsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  runner_callbacks: RunnerCallbacksTable;
  generation_references: GenerationReferencesTable;
  leases: LeasesTable;
}


