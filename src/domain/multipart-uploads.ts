import type { CompleteMultipartResponse, CreateMultipartRequest, CreateMultipartResponse, ListedPart, SignedPart } from '../contract/multipart.js';
import type { Db } from '../db/database.js';
import type { UploadsTable } from '../db/schema.js';
import { checkCompletion, isPartNumber, MULTIPART_LIMITS, MultipartError, type UploadedPart } from '../storage/multipart.js';
import type { ObjectStore } from '../storage/object-store.js';
import { ApiError, notFound, validationError } from './errors.js';
import { lookupMediaType, MAX_BYTES } from './media-types.js';
import { newUploadKey } from './object-keys.js';
import { checkFileName, findOwnedUpload, pendingUploadRecord, uploadKeyFamily, uploadMediaType } from './uploads.js';
import { NO_TELEMETRY, type Telemetry } from './telemetry.js';
import type { UploadQuota } from './usage/upload-quota.js';

/**
 * How long a multipart upload stays open after its create (default): its part URLs
 * expire after the URL lifetime like any upload URL, but new ones can be signed until
 * then, so an interrupted upload resumes from its listed parts.
 */
export const MULTIPART_LIFETIME_SECONDS = 24 * 3600;

/**
 * The reason recorded on a multipart upload aborted because its lifetime ended uncompleted, by
 * versions before migration 011 (which stored it `rejected`; such rows are answered as `expired`).
 * Since then the state `expired` itself says so.
 */
export const MULTIPART_EXPIRED_REASON = 'the multipart upload expired before it was completed';

/** Expired multipart uploads of a user aborted by one create, at most. */
const EXPIRED_PER_CREATE = 20;

/** Most part numbers one batch-sign request may name. */
export const MAX_BATCH_PARTS = 1000;

/** `file_name` keeps at most this many characters (Uppy sends whatever the file is called). */
const MAX_FILE_NAME = 255;

/** The wire shapes of Companion's S3 routes are the contract's (src/contract/multipart.ts). */
export type { CompleteMultipartResponse, CreateMultipartRequest, CreateMultipartResponse, ListedPart, SignedPart };

/** The fixed part plan of a declared size: parts of `partSize` bytes, the last one the rest. */
export interface PartPlan {
  size: number;
  partSize: number;
  partCount: number;
}

/** part size = max(5 MiB, ceil(size / 10 000)), so no plan has more than 10 000 parts. */
export function partPlan(size: number): PartPlan {
  const partSize = Math.max(MULTIPART_LIMITS.minPartBytes, Math.ceil(size / MULTIPART_LIMITS.maxParts));
  return { size, partSize, partCount: Math.max(1, Math.ceil(size / partSize)) };
}

/**
 * The most parts an upload of at most `maxBytes` can have: every part but the last is at
 * least 5 MiB, so a higher part number could never complete within the limit. Without a
 * declared size, parts past it are not signed, which bounds what a client can park in parts.
 */
export function maxPartsWithin(maxBytes: number): number {
  return Math.floor((maxBytes - 1) / MULTIPART_LIMITS.minPartBytes) + 1;
}

/** The exact size of part `partNumber` of `plan`, or null when the plan has no such part. */
export function plannedPartSize(plan: PartPlan, partNumber: number): number | null {
  if (partNumber < 1 || partNumber > plan.partCount) return null;
  return partNumber < plan.partCount ? plan.partSize : plan.size - plan.partSize * (plan.partCount - 1);
}

type UploadRecord = UploadsTable;

/**
 * Multipart uploads of references (issue 13), on Uppy Companion's S3 protocol.
 *
 * The record is created with the upload (`pending`, with its upload id: the status
 * endpoint says `uploading`), against the same quota as a presign: it is one pending
 * upload, reserving its declared size (else the family's `max_bytes`) until it is
 * completed or aborted. The client PUTs parts straight to the store through signed
 * part URLs; with a declared size each URL signs its exact Content-Length, so the
 * store itself refuses a part of another size. The server completes: it lists the
 * parts, and refuses (aborting the upload and rejecting the record, with a reason)
 * when the parts named add up to more than `max_bytes` or to another size than the
 * one declared; otherwise the store assembles the object, the record becomes
 * `uploaded`, and the one Verifier decides, exactly as for a single PUT.
 *
 * Ownership: every operation names the key and the upload id, and both must be one
 * of the caller's open multipart uploads; anything else (another user's, a missing
 * or malformed key, a wrong id) is the same 404.
 */
export class MultipartUploads {
  private readonly lifetimeSeconds: number;
  /** Counts creates, refusals and expiries (src/domain/telemetry.ts). */
  private readonly telemetry: Telemetry;

  constructor(
    private readonly db: Db,
    private readonly store: ObjectStore,
    private readonly urlTtlSeconds: number,
    private readonly quota: UploadQuota | null = null,
    options: { lifetimeSeconds?: number; telemetry?: Telemetry } = {},
  ) {
    this.lifetimeSeconds = options.lifetimeSeconds ?? MULTIPART_LIFETIME_SECONDS;
    this.telemetry = options.telemetry ?? NO_TELEMETRY;
  }

  async create(userId: string, request: CreateMultipartRequest): Promise<CreateMultipartResponse> {
    const media = uploadMediaType(request.type, 'type');
    const fileName = request.filename === undefined || request.filename === '' ? null : request.filename.slice(0, MAX_FILE_NAME);
    checkFileName(fileName, 'filename');
    if (request.size !== undefined && request.contentLength !== undefined && request.size !== request.contentLength) {
      throw validationError('size and contentLength, when both given, must be equal');
    }
    const maxBytes = MAX_BYTES[media.family];
    const size = request.size ?? request.contentLength ?? null;
    if (size !== null && (size < 1 || size > maxBytes)) {
      throw validationError(`size must be from 1 to ${maxBytes} bytes for ${media.family} uploads`);
    }

    // The user's uploads whose lifetime ended uncompleted give their parts and their reservation back first.
    if ((await this.abortExpired(userId)) > 0) this.quota?.markStale(userId);
    // The same quota as a presign: one pending upload, reserving the declared size or max_bytes.
    const reservation = size ?? maxBytes;
    const quota = this.quota;
    const grant = quota === null ? null : (quota.tryReserve(userId, reservation) ?? (await quota.reserve(userId, reservation)));
    let committed = false;
    try {
      const { key } = newUploadKey(userId, media.extension);
      let uploadId: string;
      try {
        ({ uploadId } = await this.store.createMultipart({ key, contentType: media.contentType }));
      } catch (err) {
        throw new ApiError('server_error', 'Failed to create the multipart upload', { cause: err });
      }
      const now = new Date();
      try {
        await this.db
          .insertInto('uploads')
          .values(
            pendingUploadRecord({
              key,
              userId,
              contentType: media.contentType,
              maxBytes,
              contentLength: size,
              fileName,
              createdAt: now,
              expiresAt: new Date(now.getTime() + this.lifetimeSeconds * 1000),
              multipartUploadId: uploadId,
            }),
          )
          .execute();
      } catch (err) {
        // No record, no upload: the parts could never be completed, so drop them now.
        await this.store.abortMultipart(key, uploadId).catch(() => undefined);
        throw err;
      }
      committed = true;
      this.telemetry.presignIssued(media.family, 'multipart');
      const response: CreateMultipartResponse = { uploadId, key, max_bytes: maxBytes };
      if (size !== null) {
        const plan = partPlan(size);
        response.part_size = plan.partSize;
        response.part_count = plan.partCount;
      }
      return response;
    } finally {
      if (grant !== null) quota!.settle(grant, reservation, committed);
    }
  }

  /** A URL for one part: with a declared size, signed for that part's exact length. */
  async signPart(userId: string, key: string, uploadId: string, partNumber: number): Promise<SignedPart> {
    const record = await this.openUpload(userId, key, uploadId);
    return { url: await this.presignPart(record, uploadId, partNumber), expires: this.urlTtlSeconds };
  }

  /** URLs for several parts at once (Companion's batch route), keyed by part number. */
  async signParts(userId: string, key: string, uploadId: string, partNumbers: number[]): Promise<{ presignedUrls: Record<string, string> }> {
    if (partNumbers.length === 0) throw validationError('partNumbers must name at least one part');
    if (partNumbers.length > MAX_BATCH_PARTS) throw validationError(`partNumbers may name at most ${MAX_BATCH_PARTS} parts`);
    const record = await this.openUpload(userId, key, uploadId);
    // Checked before anything is signed: one bad number refuses the whole batch.
    for (const n of partNumbers) this.partLength(record, n);
    const presignedUrls: Record<string, string> = {};
    for (const n of [...new Set(partNumbers)]) presignedUrls[String(n)] = await this.presignPart(record, uploadId, n);
    return { presignedUrls };
  }

  /** The parts the store has received, in part-number order (for resume). */
  async listParts(userId: string, key: string, uploadId: string): Promise<ListedPart[]> {
    await this.openUpload(userId, key, uploadId);
    const parts = await this.storeParts(key, uploadId);
    return parts.map((p) => ({ PartNumber: p.partNumber, Size: p.size, ETag: p.etag }));
  }

  /**
   * Completes the upload, the server's own way: the parts named must all have been
   * received with those ETags, and their total must be within `max_bytes` (and equal
   * to the declared size, if any). A total that is not is refused for good: the upload
   * is aborted and the record rejected with the reason. A complete repeated after
   * success (a lost answer) answers the same again.
   */
  async complete(userId: string, key: string, uploadId: string, given: { partNumber: number; etag: string }[]): Promise<CompleteMultipartResponse> {
    const record = await this.findUpload(userId, key, uploadId);
    const done: CompleteMultipartResponse = { location: `/api/uploads/status?key=${encodeURIComponent(key)}`, key };
    if (record.state === 'uploaded' || record.state === 'verified') return done;
    if (!this.isOpen(record)) throw multipartNotFound();

    const declared = record.content_length === null ? null : Number(record.content_length);
    if (declared !== null) {
      const plan = partPlan(declared);
      const numbers = given.map((p) => p.partNumber);
      if (numbers.length !== plan.partCount || numbers.some((n, i) => n !== i + 1)) {
        throw validationError(`parts must be parts 1 to ${plan.partCount}, in order: the plan of the declared ${declared} bytes`);
      }
    }
    const received = await this.storeParts(key, uploadId);
    let chosen: UploadedPart[];
    try {
      chosen = checkCompletion(given, received);
    } catch (err) {
      throw mapMultipartError(err);
    }
    const total = chosen.reduce((sum, p) => sum + p.size, 0);
    const maxBytes = Number(record.max_bytes);
    if (total > maxBytes) await this.refuse(record, uploadId, total, `the parts add up to ${total} bytes, over the ${maxBytes}-byte limit`);
    if (declared !== null && total !== declared) {
      await this.refuse(record, uploadId, total, `the parts add up to ${total} bytes, not the ${declared} bytes declared`);
    }

    let info;
    try {
      info = await this.store.completeMultipart(key, uploadId, given);
    } catch (err) {
      const mapped = mapMultipartError(err);
      // A retried complete whose first attempt completed (and whose answer was lost).
      if (mapped.code === 'not_found') {
        const now = await this.findUpload(userId, key, uploadId).catch(() => null);
        if (now && (now.state === 'uploaded' || now.state === 'verified')) return done;
      }
      throw mapped;
    }
    const uploadedAt = new Date().toISOString();
    const result = await this.db
      .updateTable('uploads')
      .set({ state: 'uploaded', size: info.size, sha256: info.sha256, etag: null, sniffed_type: null, reason: null, uploaded_at: uploadedAt, verified_at: null })
      .where('s3_key', '=', key)
      .where('state', '=', 'pending')
      .executeTakeFirst();
    this.quota?.markStale(userId);
    if (result.numUpdatedRows !== 1n) {
      const now = await this.db.selectFrom('uploads').select('state').where('s3_key', '=', key).executeTakeFirst();
      if (now && (now.state === 'uploaded' || now.state === 'verified')) return done;
      // Aborted while it was being completed: nothing may keep the object.
      await this.store.delete(key);
      throw multipartNotFound();
    }
    return done;
  }

  /** Aborts the upload: the store drops its parts, and the record is rejected ("aborted"), freeing its quota. */
  async abort(userId: string, key: string, uploadId: string): Promise<void> {
    const record = await this.findUpload(userId, key, uploadId);
    if (record.state === 'rejected' || record.state === 'expired') return; // already aborted, refused or expired: nothing left to drop
    if (record.state !== 'pending') throw multipartNotFound(); // completed: S3 says NoSuchUpload too
    await this.store.abortMultipart(key, uploadId);
    await this.reject(record, null, 'the multipart upload was aborted');
  }

  /**
   * Aborts the user's multipart uploads whose lifetime ended uncompleted (at most
   * EXPIRED_PER_CREATE), as the sweep does for every user (`abortExpiredUploads`).
   * An index range over the user's pending rows (`uploads_user_state`). Returns how many this call aborted.
   */
  async abortExpired(userId: string, now = new Date()): Promise<number> {
    const aborted = await abortExpiredUploads(this.db, this.store, { userId, now, limit: EXPIRED_PER_CREATE });
    for (const upload of aborted.aborted) this.telemetry.uploadSettled('expired', uploadKeyFamily(upload.key));
    return aborted.aborted.length;
  }

  // ---- helpers ---------------------------------------------------------------------

  /** The caller's multipart upload of `key` with this id, whatever its state; else the one 404. */
  private async findUpload(userId: string, key: string, uploadId: string): Promise<UploadRecord> {
    const record = await findOwnedUpload(this.db, userId, key);
    if (!record || record.multipart_upload_id === null || record.multipart_upload_id !== uploadId) throw multipartNotFound();
    return record;
  }

  /** As findUpload, but only while parts may still be sent: pending and within its lifetime. */
  private async openUpload(userId: string, key: string, uploadId: string): Promise<UploadRecord> {
    const record = await this.findUpload(userId, key, uploadId);
    if (!this.isOpen(record)) throw multipartNotFound();
    return record;
  }

  private isOpen(record: UploadRecord): boolean {
    return record.state === 'pending' && new Date() < new Date(record.expires_at);
  }

  /** The Content-Length a part URL signs (null: any, within the store's part limits); 400 for a part outside the plan. */
  private partLength(record: UploadRecord, partNumber: number): number | null {
    if (!isPartNumber(partNumber)) throw validationError(`partNumber must be an integer from 1 to ${MULTIPART_LIMITS.maxParts}`);
    if (record.content_length === null) {
      const most = maxPartsWithin(Number(record.max_bytes));
      if (partNumber > most) {
        throw validationError(`part ${partNumber} is past the last possible part: an upload of at most ${Number(record.max_bytes)} bytes has at most ${most} parts (all but the last at least ${MULTIPART_LIMITS.minPartBytes} bytes)`);
      }
      return null;
    }
    const plan = partPlan(Number(record.content_length));
    const length = plannedPartSize(plan, partNumber);
    if (length === null) {
      throw validationError(`part ${partNumber} is outside the plan: the declared ${plan.size} bytes are parts 1 to ${plan.partCount} of ${plan.partSize} bytes (the last the rest)`);
    }
    return length;
  }

  private async presignPart(record: UploadRecord, uploadId: string, partNumber: number): Promise<string> {
    const contentLength = this.partLength(record, partNumber);
    try {
      return await this.store.presignPart({ key: record.s3_key, uploadId, partNumber, contentLength, expiresInSeconds: this.urlTtlSeconds });
    } catch (err) {
      if (err instanceof MultipartError) throw mapMultipartError(err);
      throw new ApiError('server_error', 'Failed to create the part upload URL', { cause: err });
    }
  }

  private async storeParts(key: string, uploadId: string): Promise<UploadedPart[]> {
    const parts = await this.store.listParts(key, uploadId);
    if (parts === 'missing') throw multipartNotFound();
    return parts;
  }

  /** Aborts the upload and rejects its record for good; always throws the 400 saying why. */
  private async refuse(record: UploadRecord, uploadId: string, total: number, reason: string): Promise<never> {
    await this.store.abortMultipart(record.s3_key, uploadId);
    await this.reject(record, total, reason);
    this.telemetry.uploadSettled('rejected', lookupMediaType(record.content_type)?.family ?? uploadKeyFamily(record.s3_key));
    throw validationError(`Upload refused: ${reason}; the multipart upload was aborted`);
  }

  private async reject(record: UploadRecord, size: number | null, reason: string): Promise<void> {
    await this.db
      .updateTable('uploads')
      .set({ state: 'rejected', reason, size, verified_at: new Date().toISOString() })
      .where('s3_key', '=', record.s3_key)
      .where('state', '=', 'pending')
      .execute();
    this.quota?.markStale(record.user_id);
  }
}

/** A multipart upload the sweep (or a create) aborted: the record's key, its owner and its upload id. */
export interface ExpiredUpload {
  key: string;
  userId: string;
  uploadId: string;
}

/**
 * Aborts multipart uploads whose lifetime ended uncompleted: of one user (`userId`,
 * through `uploads_user_state`) or of every user (through `uploads_multipart_expiry`,
 * migration 010), at most `limit` read, oldest expiry first. Returns the ones this call aborted,
 * and `full` when the read found `limit` rows (there may be more).
 *
 * Each upload is first claimed, then aborted: the conditional UPDATE stores the record
 * `expired` (with `expired_at`) only while it is still `pending`, and only the caller whose UPDATE changed the row drops the store's parts.
 * So several sweepers (and creates) at once abort each upload once, and a crash between
 * the two steps leaves a record that is already closed (no client can sign, list or
 * complete it any more; its quota reservation is free) with parts nobody can use: the
 * bucket's lifecycle rule (S3_APPLY_LIFECYCLE) or the disk store's orphan sweep removes
 * those. The other order could leave a record still `pending` (reserving its quota,
 * answered `uploading`) whose parts are gone. A complete racing the claim loses: its own
 * UPDATE (`pending` to `uploaded`) finds the row rejected and deletes the object.
 */
export async function abortExpiredUploads(
  db: Db,
  store: ObjectStore,
  options: { userId?: string; now?: Date; limit: number; onError?: (err: unknown, upload: ExpiredUpload) => void },
): Promise<{ aborted: ExpiredUpload[]; full: boolean }> {
  const now = (options.now ?? new Date()).toISOString();
  let query = db
    .selectFrom('uploads')
    .select(['s3_key', 'multipart_upload_id', 'user_id'])
    .where('state', '=', 'pending')
    .where('multipart_upload_id', 'is not', null)
    .where('expires_at', '<=', now);
  if (options.userId !== undefined) query = query.where('user_id', '=', options.userId);
  const expired = await query.orderBy('expires_at').limit(options.limit).execute();
  const aborted: ExpiredUpload[] = [];
  for (const row of expired) {
    const claim = await db
      .updateTable('uploads')
      .set({ state: 'expired', expired_at: now })
      .where('s3_key', '=', row.s3_key)
      .where('state', '=', 'pending')
      .where('multipart_upload_id', '=', row.multipart_upload_id!)
      .executeTakeFirst();
    if (claim.numUpdatedRows !== 1n) continue; // another sweeper (or the client) got there first
    const upload: ExpiredUpload = { key: row.s3_key, userId: row.user_id, uploadId: row.multipart_upload_id! };
    aborted.push(upload);
    try {
      await store.abortMultipart(upload.key, upload.uploadId);
    } catch (err) {
      // Claimed already: the record is closed for good; the parts are left to the backstops (see above).
      options.onError?.(err, upload);
    }
  }
  return { aborted, full: expired.length === options.limit };
}

const multipartNotFound = () => notFound('Multipart upload not found');

/** The store's refusals in the envelope: a missing upload is the one 404, the rest 400 naming S3's code. */
function mapMultipartError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof MultipartError) {
    if (err.code === 'NoSuchUpload') return multipartNotFound();
    return validationError(`${err.code}: ${err.message}`);
  }
  throw err;
}
