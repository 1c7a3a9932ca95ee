import type { Readable } from 'node:stream';
import type { MultipartStore } from './multipart.js';

/**
 * The one narrow interface every object store implements (the embedded disk
 * store, any S3-compatible store). Clients write through presigned URLs; the
 * server itself only inspects, reads the first bytes of, and deletes objects,
 * and writes the videos it renders.
 */
export interface ObjectStore extends MultipartStore {
  readonly kind: 'disk' | 's3';

  /**
   * A URL the client PUTs the bytes to. The signature binds the key, the
   * Content-Type and, when given, the exact Content-Length; `maxBytes` is
   * enforced at upload time where the store can (the disk store can, S3 cannot).
   */
  presignPut(input: PresignPutInput): Promise<string>;

  /**
   * A URL anyone holding it can GET the object from until it expires. The answer
   * carries `response`'s Content-Type and Content-Disposition (S3's
   * `response-content-*` parameters; the disk store sets them itself).
   */
  presignGet(key: string, expiresInSeconds: number, response?: DownloadHeaders): Promise<string>;

  /** Size and type of a stored object; null when there is none. */
  head(key: string): Promise<ObjectInfo | null>;

  /**
   * Bytes `start` to `end` inclusive (fewer when the object is shorter); only
   * those bytes cross the wire. Null when the object does not exist.
   */
  getRange(key: string, start: number, end: number): Promise<Buffer | null>;

  /**
   * The object's bytes, but only while its ETag is still `etag` (S3 `If-Match`;
   * the disk store compares its own): `changed` when the object was replaced
   * since, `missing` when it is gone. What a consumer reads this way is exactly
   * what was verified.
   */
  openVerified(key: string, etag: string): Promise<Readable | 'changed' | 'missing'>;

  /** Stores a whole object written by the server itself (a rendered video). */
  put(key: string, body: Readable, contentType: string): Promise<void>;

  /** Removes the object; no error when it is already gone. */
  delete(key: string): Promise<void>;

  /**
   * Every object whose key starts with `prefix`, each once, a page at a time as the
   * store answers them (no order promised). What it lists is what `head` finds:
   * the disk store leaves out a key whose delete a crash interrupted. For the
   * reconciliation of store and records (src/domain/lifecycle/reconcile.ts).
   */
  list(prefix: string): AsyncIterable<ListedObject>;
}

/** One object as a listing names it. */
export interface ListedObject {
  key: string;
  size: number;
  /** When the store last wrote it: how old an orphan is. */
  lastModified: Date;
}

export interface PresignPutInput {
  key: string;
  contentType: string;
  maxBytes: number;
  /** Exact size in bytes the upload must have, when the client declared it. */
  contentLength: number | null;
  expiresInSeconds: number;
}

/**
 * The headers a presigned upload URL binds, with the values the client must
 * send: the type, and the exact size when the client declared one. Without
 * `content-type` in the signature a client could PUT text/html to a key handed
 * out for image/png.
 */
export function signedUploadHeaders(input: PresignPutInput): Record<string, string> {
  const headers: Record<string, string> = { 'content-type': input.contentType };
  if (input.contentLength !== null) headers['content-length'] = String(input.contentLength);
  return headers;
}

export interface ObjectInfo {
  size: number;
  contentType: string | null;
  etag: string | null;
  /** Hex SHA-256 of the bytes, where the store knows it. */
  sha256: string | null;
}

/** Headers a download answers with, so a browser never runs or sniffs what it fetched. */
export interface DownloadHeaders {
  contentType: string;
  /** `inline` for the media types the table allows (verified, safe to play), `attachment` for anything else. */
  contentDisposition: 'inline' | 'attachment';
}
