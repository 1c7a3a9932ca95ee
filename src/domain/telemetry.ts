import type { MediaFamily } from './media-types.js';

/** What the upload lifecycle removed (issue 15): an upload no generation used, a used reference, a rendered video. */
export type RetentionDeletion = 'unused_upload' | 'used_reference' | 'video';

/** How an upload URL was issued: a presign, a multipart create, or Uppy's `/api/s3/params` (a presign too). */
export type PresignVia = 'presign' | 'multipart' | 'params';

/**
 * What the domain tells the operator about its work, as counts and durations (the port; the
 * Prometheus adapter is src/metrics/prometheus.ts). Every argument is bounded: a media family,
 * an outcome, a model name from the registry. Never a key, a user or an object key. Calls
 * are synchronous and never throw.
 */
export interface Telemetry {
  /** An upload URL (or multipart upload) was issued. */
  presignIssued(family: MediaFamily, via: PresignVia): void;
  /** An upload's state was settled for good: verified or rejected by verification, or expired (its URL or multipart lifetime ended unused). */
  uploadSettled(state: 'verified' | 'rejected' | 'expired', family: MediaFamily): void;
  /** Bytes of an upload that verified. */
  bytesIngested(bytes: number, family: MediaFamily): void;
  /** One verification that came to a verdict, and how long it took (HEAD, reads, copy and probe). */
  verificationFinished(outcome: 'verified' | 'rejected', seconds: number): void;
  /** A generation settled, and the seconds from its creation (queueing included). */
  generationSettled(status: 'completed' | 'failed', model: string, secondsFromCreate: number): void;
  /** One webhook attempt's outcome: delivered, failed (a retry follows) or gave up (the last attempt failed). */
  webhookAttempt(outcome: 'delivered' | 'failed' | 'gave_up'): void;
  /** The retention policy removed an object (its record kept, `deleted`). */
  retentionDeleted(what: RetentionDeletion): void;
}

/** Telemetry that records nothing: the default of every domain service (tests, tools). */
export const NO_TELEMETRY: Telemetry = {
  presignIssued: () => {},
  uploadSettled: () => {},
  bytesIngested: () => {},
  verificationFinished: () => {},
  generationSettled: () => {},
  webhookAttempt: () => {},
  retentionDeleted: () => {},
};
