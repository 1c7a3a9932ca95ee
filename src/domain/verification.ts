import { fileTypeFromBuffer } from 'file-type';
import type { Db } from '../db/database.js';
import type { UploadsTable } from '../db/schema.js';
import type { ObjectStore } from '../storage/object-store.js';
import { lookupMediaType, normaliseContentType, type MediaFamily } from './media-types.js';
import { parseUploadKey } from './object-keys.js';
import { findTruncation } from './truncation.js';

/**
 * Where an upload stands. `expired` is never stored: it is a pending upload whose
 * URL has expired with no object behind it, worked out when asked, because on S3 a
 * PUT that began before the expiry may still complete after it.
 */
export type UploadState = 'pending' | 'uploaded' | 'verified' | 'rejected' | 'expired';

/** What every consumer of an upload (generations, the status endpoint) learns about it. */
export interface UploadStatus {
  s3_key: string;
  state: UploadState;
  /** The content type declared at presign time. */
  content_type: string;
  family: MediaFamily;
  /** Bytes stored, once known. */
  size: number | null;
  max_bytes: number;
  /** Why the upload was rejected; only when `state` is `rejected`. */
  reason?: string;
  /** MIME type the first bytes were recognised as, once checked. */
  sniffed_type: string | null;
  /** Hex SHA-256 of the bytes, where the store knows it. */
  sha256: string | null;
  /** ETag of the object as verified: a consumer compares it to notice a replaced object. */
  etag: string | null;
}

/**
 * Bytes read from the start of an object for the magic-byte check: enough for every
 * signature `file-type` knows and for the headers `findTruncation` reads, and small
 * enough that checking a 200 MB video costs one small ranged GET.
 */
export const SNIFF_BYTES = 64 * 1024;

type UploadRecord = UploadsTable;

/** A verdict on the object as stored now; `inconclusive` when it changed or vanished while being read. */
type Verdict =
  | { outcome: 'verified'; size: number; sniffedType: string; sha256: string | null; etag: string | null }
  | { outcome: 'rejected'; reason: string; size: number; sniffedType: string | null }
  | { outcome: 'missing' }
  | { outcome: 'inconclusive' };

/**
 * The one verification of an upload, used by every consumer: the object exists,
 * is within its size limit (and the exact length signed, if any), was stored with
 * the declared Content-Type, and its first bytes are the declared type and do not
 * contradict its size. The verdict is recorded on the upload and remembered: a
 * verified or rejected upload is answered from the database alone. A rejected
 * object is deleted, so nothing can ever serve it.
 */
export class Verifier {
  constructor(
    private readonly db: Db,
    private readonly store: ObjectStore,
  ) {}

  /** Status of the caller's upload, verifying it on the way when its object has arrived; null when the key is missing or belongs to another user (indistinguishable). */
  async status(userId: string, key: string): Promise<UploadStatus | null> {
    if (parseUploadKey(key)?.userId !== userId) return null;
    const record = await this.db
      .selectFrom('uploads')
      .selectAll()
      .where('s3_key', '=', key)
      .where('user_id', '=', userId)
      .executeTakeFirst();
    if (!record) return null;
    if (record.state === 'verified' || record.state === 'rejected') return toStatus(record);

    const verdict = await this.judge(record);
    switch (verdict.outcome) {
      case 'missing':
        return toStatus({ ...record, size: null, sha256: null }, new Date() >= new Date(record.expires_at) ? 'expired' : 'pending');
      case 'inconclusive':
        return toStatus(record, 'uploaded');
      case 'rejected':
        // Deleted before it is recorded: if recording fails, the next call finds no object and says pending.
        await this.store.delete(record.s3_key);
        return this.record(record, { state: 'rejected', reason: verdict.reason, size: verdict.size, sniffed_type: verdict.sniffedType, sha256: null });
      case 'verified':
        return this.record(record, {
          state: 'verified',
          reason: null,
          size: verdict.size,
          sniffed_type: verdict.sniffedType,
          sha256: verdict.sha256,
          etag: verdict.etag,
          uploaded_at: record.uploaded_at ?? new Date().toISOString(),
        });
    }
  }

  /** Inspects the stored object: one HEAD, then at most one ranged GET of its first bytes. */
  private async judge(record: UploadRecord): Promise<Verdict> {
    const info = await this.store.head(record.s3_key);
    if (!info) return { outcome: 'missing' };
    const { size } = info;
    const reject = (reason: string, sniffedType: string | null = null): Verdict => ({ outcome: 'rejected', reason, size, sniffedType });

    if (size === 0) return reject('the uploaded object is empty');
    // Bigint columns may come back as strings from other SQL drivers: compare numbers.
    const maxBytes = Number(record.max_bytes);
    const contentLength = record.content_length === null ? null : Number(record.content_length);
    if (size > maxBytes) return reject(`the object is ${size} bytes, over the ${maxBytes}-byte limit`);
    if (contentLength !== null && size !== contentLength) {
      return reject(`the object is ${size} bytes, not the ${contentLength} bytes declared`);
    }
    const storedType = info.contentType === null ? null : normaliseContentType(info.contentType);
    if (storedType !== record.content_type) {
      return reject(`the object was stored as ${storedType ?? 'no content type'}, not the declared ${record.content_type}`);
    }
    const media = lookupMediaType(record.content_type);
    if (!media) return reject(`${record.content_type} is no longer an allowed content type`);

    const wanted = Math.min(size, SNIFF_BYTES);
    const head = await this.store.getRange(record.s3_key, 0, wanted - 1);
    if (!head) return { outcome: 'missing' };
    // Fewer bytes than HEAD promised: the object was replaced mid-check; judge it on a later call.
    if (head.length < wanted) return { outcome: 'inconclusive' };

    const sniffed = await fileTypeFromBuffer(head);
    if (!sniffed) return reject(`the content is not a recognised ${media.family} format (declared ${record.content_type})`);
    if (!media.sniffedAs.includes(sniffed.mime)) {
      return reject(`the content is ${sniffed.mime}, not the declared ${record.content_type}`, sniffed.mime);
    }
    const truncation = findTruncation(head, size);
    if (truncation) return reject(`the ${record.content_type} file is incomplete (${truncation})`, sniffed.mime);
    return { outcome: 'verified', size, sniffedType: sniffed.mime, sha256: info.sha256, etag: info.etag };
  }

  /**
   * Stores a verdict, unless the upload changed since it was read (a new PUT of
   * the same URL resets it to `uploaded`): then the newer record is answered and
   * judged on a later call, never overwritten with a verdict on older bytes.
   */
  private async record(before: UploadRecord, changes: Partial<UploadRecord>): Promise<UploadStatus | null> {
    const now = new Date().toISOString();
    const result = await this.db
      .updateTable('uploads')
      .set({ ...changes, verified_at: now })
      .where('s3_key', '=', before.s3_key)
      .where('state', '=', before.state)
      .where('uploaded_at', before.uploaded_at === null ? 'is' : '=', before.uploaded_at)
      .executeTakeFirst();
    if (result.numUpdatedRows === 1n) return toStatus({ ...before, ...changes, verified_at: now });
    const current = await this.db.selectFrom('uploads').selectAll().where('s3_key', '=', before.s3_key).executeTakeFirst();
    return current ? toStatus(current) : null;
  }
}

function toStatus(record: UploadRecord, state: UploadState = record.state): UploadStatus {
  const status: UploadStatus = {
    s3_key: record.s3_key,
    state,
    content_type: record.content_type,
    family: familyOf(record.content_type),
    size: record.size === null ? null : Number(record.size),
    max_bytes: Number(record.max_bytes),
    sniffed_type: record.sniffed_type,
    sha256: record.sha256,
    etag: record.etag,
  };
  if (state === 'rejected' && record.reason !== null) status.reason = record.reason;
  return status;
}

/** The family of a declared type: from the table, or from its top-level type if the table has since dropped it. */
function familyOf(contentType: string): MediaFamily {
  const media = lookupMediaType(contentType);
  if (media) return media.family;
  const topLevel = contentType.split('/', 1)[0];
  return topLevel === 'video' || topLevel === 'audio' ? topLevel : 'image';
}
