import type { ObjectInfo } from './object-store.js';

/** S3's limits, which the disk store applies too so that a client behaves the same on both. */
export const MULTIPART_LIMITS = { minPartBytes: 5 * 1024 * 1024 /* all but the last */, maxPartBytes: 5 * 1024 ** 3, maxParts: 10_000 } as const;

export interface UploadedPart {
  partNumber: number;
  size: number;
  etag: string;
}

/**
 * The multipart part of an object store: the client PUTs parts straight to the
 * store through presigned URLs, the server lists and completes (or aborts).
 */
export interface MultipartStore {
  /** Starts a multipart upload of `key` (the object does not exist until completion). */
  createMultipart(input: { key: string; contentType: string }): Promise<{ uploadId: string }>;
  /** A URL the client PUTs one part to; with `contentLength` the store refuses a part of any other size (signed header). */
  presignPart(input: { key: string; uploadId: string; partNumber: number; contentLength: number | null; expiresInSeconds: number }): Promise<string>;
  /** Parts received so far, in part-number order (for resume and for the server's size check before completing). Unknown upload → 'missing'. */
  listParts(key: string, uploadId: string): Promise<UploadedPart[] | 'missing'>;
  /** Assembles the parts into the object, atomically: afterwards the object is whole, or (on failure/crash) absent. Returns its info. */
  completeMultipart(key: string, uploadId: string, parts: { partNumber: number; etag: string }[]): Promise<ObjectInfo>;
  /** Drops the upload and its parts; no error when already gone. */
  abortMultipart(key: string, uploadId: string): Promise<void>;
  /**
   * Uploads in progress created before `before` (the disk store's; S3 has its lifecycle rule
   * instead): the sweep removes those no open record names, as crash leftovers.
   */
  staleMultipartUploads?(before: Date): Promise<{ key: string; uploadId: string }[]>;
}

export type MultipartErrorCode = 'InvalidPart' | 'InvalidPartOrder' | 'EntityTooSmall' | 'NoSuchUpload';

/** A refused multipart operation, with S3's code, for the HTTP layer to map. */
export class MultipartError extends Error {
  constructor(
    readonly code: MultipartErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'MultipartError';
  }
}

/** Whether `partNumber` is one S3 accepts (1..10000). */
export const isPartNumber = (partNumber: number) => Number.isInteger(partNumber) && partNumber >= 1 && partNumber <= MULTIPART_LIMITS.maxParts;

/** ETags compare without their quotes (clients send them either way). */
/** What every store refuses before signing a part URL: a part number or a signed size outside S3's limits (a caller's bug, not the client's). */
export function checkPartInput(input: { partNumber: number; contentLength: number | null }): void {
  if (!isPartNumber(input.partNumber)) throw new RangeError(`part number out of range: ${input.partNumber}`);
  const length = input.contentLength;
  if (length !== null && (!Number.isSafeInteger(length) || length < 0 || length > MULTIPART_LIMITS.maxPartBytes)) {
    throw new RangeError(`part size out of range: ${length}`);
  }
}

export const sameEtag = (a: string, b: string) => a.replace(/^"|"$/g, '') === b.replace(/^"|"$/g, '');

/**
 * The checks both stores share before completing: a non-empty list in strictly
 * ascending part numbers (InvalidPartOrder), each part received with that ETag
 * (InvalidPart), every part but the last at least `minPartBytes` (EntityTooSmall).
 * Returns the received parts in the order given.
 */
export function checkCompletion(given: { partNumber: number; etag: string }[], received: UploadedPart[]): UploadedPart[] {
  if (given.length === 0) throw new MultipartError('InvalidPart', 'The part list is empty');
  if (given.length > MULTIPART_LIMITS.maxParts) throw new MultipartError('InvalidPart', `More than ${MULTIPART_LIMITS.maxParts} parts`);
  for (let i = 1; i < given.length; i++) {
    if (!(given[i]!.partNumber > given[i - 1]!.partNumber)) {
      throw new MultipartError('InvalidPartOrder', 'The list of parts was not in ascending order. The parts list must be specified in order by part number.');
    }
  }
  const byNumber = new Map(received.map((p) => [p.partNumber, p]));
  const chosen = given.map((g) => {
    const part = byNumber.get(g.partNumber);
    if (!part || typeof g.etag !== 'string' || !sameEtag(part.etag, g.etag)) {
      throw new MultipartError('InvalidPart', `Part ${g.partNumber} was not uploaded, or its ETag does not match`);
    }
    return part;
  });
  chosen.slice(0, -1).forEach((part) => {
    if (part.size < MULTIPART_LIMITS.minPartBytes) {
      throw new MultipartError('EntityTooSmall', `Part ${part.partNumber} is smaller than the minimum allowed size (${MULTIPART_LIMITS.minPartBytes} bytes)`);
    }
  });
  return chosen;
}
