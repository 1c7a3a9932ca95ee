import type { PresignRequest, PresignResponse } from '../contract/uploads.js';
import { BatchedInsert } from '../db/batched-insert.js';
import type { Insertable } from 'kysely';
import type { Db } from '../db/database.js';
import type { UploadsTable } from '../db/schema.js';
import type { ObjectStore } from '../storage/object-store.js';
import { ApiError, validationError } from './errors.js';
import { ALLOWED_CONTENT_TYPES, lookupMediaType, MAX_BYTES, mediaTypeOfExtension, type MediaFamily, type MediaType } from './media-types.js';
import { newUploadKey, parseUploadKey } from './object-keys.js';
import { NO_TELEMETRY, type PresignVia, type Telemetry } from './telemetry.js';
import type { UploadQuota } from './usage/upload-quota.js';

/** The wire shapes of a presign are the contract's (src/contract/uploads.ts). */
export type { PresignRequest, PresignResponse };

export interface ArrivedObject {
  key: string;
  size: number;
  sha256: string;
  contentType: string;
}

const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/** The media-table entry of a requested type (single PUT and multipart alike); 400 naming `field` when the type is not allowed. */
export function uploadMediaType(contentType: string, field: string): MediaType {
  const media = lookupMediaType(contentType);
  if (!media) throw validationError(`Unsupported ${field}; allowed: ${ALLOWED_CONTENT_TYPES.join(', ')}`);
  return media;
}

/**
 * A file name is bookkeeping only, but kept as text on every database: PostgreSQL's text cannot
 * hold NUL, and control characters in a name serve nobody but log and terminal injection.
 */
export function checkFileName(fileName: string | null | undefined, field: string): void {
  if (typeof fileName === 'string' && CONTROL_CHARACTER.test(fileName)) {
    throw validationError(`${field} must not contain control characters (U+0000 to U+001F, U+007F)`);
  }
}

/**
 * The caller's upload record of `key`, or undefined: a key of another user, a missing one and a
 * string that is not an upload key are all undefined (nobody can probe for keys).
 */
export async function findOwnedUpload(db: Db, userId: string, key: string): Promise<UploadsTable | undefined> {
  if (parseUploadKey(key)?.userId !== userId) return undefined;
  return db.selectFrom('uploads').selectAll().where('s3_key', '=', key).where('user_id', '=', userId).executeTakeFirst();
}

/** The media family of an upload known only by its key (its extension), for the metrics' family label. */
export function uploadKeyFamily(key: string): MediaFamily {
  const extension = parseUploadKey(key)?.extension;
  return (extension !== undefined ? mediaTypeOfExtension(extension)?.family : undefined) ?? 'image';
}

/** The record of a new upload: pending, nothing known of its bytes until they arrive and are verified. */
export function pendingUploadRecord(upload: {
  key: string;
  userId: string;
  contentType: string;
  maxBytes: number;
  contentLength: number | null;
  fileName: string | null;
  createdAt: Date;
  expiresAt: Date;
  multipartUploadId?: string;
}): Insertable<UploadsTable> {
  return {
    s3_key: upload.key,
    user_id: upload.userId,
    content_type: upload.contentType,
    max_bytes: upload.maxBytes,
    content_length: upload.contentLength,
    file_name: upload.fileName,
    state: 'pending',
    size: null,
    sha256: null,
    etag: null,
    sniffed_type: null,
    reason: null,
    multipart_upload_id: upload.multipartUploadId ?? null,
    created_at: upload.createdAt.toISOString(),
    expires_at: upload.expiresAt.toISOString(),
    uploaded_at: null,
    verified_at: null,
  };
}

/** Creating upload URLs and keeping the record of each upload. */
export class Uploads {
  /** Upload records of concurrent presigns share one transaction; each presign answers after its own commit. */
  private readonly records: BatchedInsert<'uploads'>;
  /** Counts issued upload URLs (src/domain/telemetry.ts). */
  private readonly telemetry: Telemetry;

  constructor(
    private readonly db: Db,
    private readonly store: ObjectStore,
    private readonly urlTtlSeconds: number,
    /** Pending-uploads and stored-bytes quotas (src/domain/usage/upload-quota.ts); none when absent. */
    private readonly quota: UploadQuota | null = null,
    options: { telemetry?: Telemetry } = {},
  ) {
    this.records = new BatchedInsert(db, 'uploads');
    this.telemetry = options.telemetry ?? NO_TELEMETRY;
  }

  /** `via`: the route that asked, for the metrics only (`params`: Uppy's `/api/s3/params`). */
  async presign(userId: string, request: PresignRequest, via: Exclude<PresignVia, 'multipart'> = 'presign'): Promise<PresignResponse> {
    if (request.kind !== 'upload') throw validationError('kind must be "upload"');
    const media = uploadMediaType(request.contentType, 'contentType');
    checkFileName(request.fileName, 'fileName');
    const maxBytes = MAX_BYTES[media.family];
    const contentLength = request.contentLength ?? null;
    if (contentLength !== null && (contentLength < 1 || contentLength > maxBytes)) {
      throw validationError(`contentLength must be from 1 to ${maxBytes} for ${media.family} uploads`);
    }
    // The quota check reserves this upload's bytes in memory before any await (see UploadQuota).
    const reservation = contentLength ?? maxBytes;
    const quota = this.quota;
    const ledger = quota === null ? null : (quota.tryReserve(userId, reservation) ?? (await quota.reserve(userId, reservation)));
    try {
      const response = await this.presignAndRecord(userId, media, maxBytes, contentLength, request.fileName ?? null);
      if (ledger !== null) quota!.settle(ledger, reservation, true);
      this.telemetry.presignIssued(media.family, via);
      return response;
    } catch (err) {
      if (ledger !== null) quota!.settle(ledger, reservation, false);
      throw err;
    }
  }

  private async presignAndRecord(
    userId: string,
    media: NonNullable<ReturnType<typeof lookupMediaType>>,
    maxBytes: number,
    contentLength: number | null,
    fileName: string | null,
  ): Promise<PresignResponse> {
    const { key } = newUploadKey(userId, media.extension);
    const now = new Date();
    const expiresAt = new Date(now.getTime() + this.urlTtlSeconds * 1000);
    let uploadUrl: string;
    try {
      uploadUrl = await this.store.presignPut({
        key,
        contentType: media.contentType,
        maxBytes,
        contentLength,
        expiresInSeconds: this.urlTtlSeconds,
      });
    } catch (err) {
      throw new ApiError('server_error', 'Failed to create upload URL', { cause: err });
    }
    await this.records.insert(pendingUploadRecord({ key, userId, contentType: media.contentType, maxBytes, contentLength, fileName, createdAt: now, expiresAt }));
    return { s3_key: key, upload_url: uploadUrl, content_type: media.contentType, max_bytes: maxBytes };
  }

  /**
   * Records that the store received the whole object: moves a `pending` record
   * to `uploaded`, and nothing else. The disk store writes each key once, so a
   * repeated PUT can only be the same bytes again (a client retrying after a
   * lost answer), and must not reset a record that was verified or rejected since.
   */
  async recordArrival(object: ArrivedObject): Promise<void> {
    await this.db
      .updateTable('uploads')
      .set({
        state: 'uploaded',
        size: object.size,
        sha256: object.sha256,
        etag: null,
        sniffed_type: null,
        reason: null,
        uploaded_at: new Date().toISOString(),
        verified_at: null,
      })
      .where('s3_key', '=', object.key)
      .where('state', '=', 'pending')
      .execute();
    const owner = parseUploadKey(object.key)?.userId;
    if (owner !== undefined) this.quota?.markStale(owner);
  }

  /**
   * Records the arrivals a kill cut off: the disk store commits an object, then its route calls
   * `recordArrival`, and a SIGKILL between the two leaves the object with a `pending` record.
   * Run at start-up, before the store takes a PUT; answers how many it recorded. Only the disk
   * store announces arrivals: on S3 every one is found later (by the status call or the cleanup).
   */
  async recordArrivalsLeftBehind(): Promise<number> {
    const pending = await this.db
      .selectFrom('uploads')
      .select('s3_key')
      .where('state', '=', 'pending')
      .where('multipart_upload_id', 'is', null)
      .execute();
    let recorded = 0;
    for (const { s3_key: key } of pending) {
      const info = await this.store.head(key);
      if (info === null || info.sha256 === null) continue;
      await this.recordArrival({ key, size: info.size, sha256: info.sha256, contentType: info.contentType ?? '' });
      recorded++;
    }
    return recorded;
  }
}
