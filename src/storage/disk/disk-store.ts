import { createHash, randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { checkCompletion, checkPartInput, isPartNumber, MULTIPART_LIMITS, MultipartError, sameEtag, type UploadedPart } from '../multipart.js';
import { signedUploadHeaders, type DownloadHeaders, type ListedObject, type ObjectInfo, type ObjectStore, type PresignPutInput } from '../object-store.js';
import { SigV4Signer } from '../sigv4.js';
import { syncWhileArriving } from './early-sync.js';
import { StorageRefusal } from './storage-refusal.js';
import { UploadSlots } from './upload-slots.js';

/** Signed into every disk upload URL, so the limit travels with the URL and needs no lookup. */
const MAX_BYTES_PARAM = 'x-keyframe-max-bytes';
/** S3's names for the signed parameters a download answers with. */
const RESPONSE_TYPE_PARAM = 'response-content-type';
const RESPONSE_DISPOSITION_PARAM = 'response-content-disposition';
/** Path segments a key may have on disk: no dot-files, no '..', nothing a filesystem treats specially. */
const SAFE_SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;

export interface DiskStoreOptions {
  /** Directory objects live under; created when missing. */
  root: string;
  /** Origin (scheme, host, port) the signed URLs point at; any path is ignored. */
  publicUrl: string;
  /** Secret the URLs are signed with. */
  signingSecret: string;
  /** First path segment of object URLs, as an S3 bucket in path-style URLs. */
  bucket?: string;
  /**
   * The user a key belongs to, or null for a key of nobody: client PUTs are
   * capped per owner. The store knows nothing of key layouts itself.
   */
  ownerOf?: (key: string) => string | null;
  /** Client PUTs in progress at once, per owner and in total (defaults: 8 and 64). */
  maxUploadsPerOwner?: number;
  maxUploads?: number;
  /**
   * How a GET whose URL names no response headers is answered, from the stored
   * type; default: that type (or application/octet-stream) as an attachment.
   */
  downloadHeaders?: (contentType: string | null) => DownloadHeaders;
}

export interface ReceivedObject {
  key: string;
  size: number;
  sha256: string;
  etag: string;
  contentType: string;
}

interface StoredMeta {
  contentType: string;
  sha256: string;
  size: number;
}

/** What the metadata of a key the server deleted becomes: its upload URL can never write it again. */
interface Tombstone {
  deleted: true;
}

/** A multipart upload in progress (`multipart/<uploadId>/upload.json`). */
interface UploadRecord {
  key: string;
  contentType: string;
  createdAt: string;
}

/** S3's names for a part's query parameters. */
const UPLOAD_ID_PARAM = 'uploadId';
const PART_NUMBER_PARAM = 'partNumber';
/** Upload ids as `createMultipart` makes them: 24 random bytes in base64url. */
const UPLOAD_ID = /^[A-Za-z0-9_-]{32}$/;
const UPLOAD_RECORD = 'upload.json';
const PART_FILE = /^([1-9][0-9]{0,4})\.part$/;
/** A part file ends with the hex SHA-256 of the bytes before it. */
const PART_TRAILER_BYTES = 64;

const isTombstone = (meta: StoredMeta | Tombstone): meta is Tombstone => 'deleted' in meta && meta.deleted === true;

/** A signed request as it arrives at the disk store's HTTP endpoint. */
export interface SignedObjectRequest {
  method: 'PUT' | 'GET';
  /** Path and query exactly as received, e.g. /keyframe/users/...?X-Amz-... */
  rawUrl: string;
  headers: Record<string, string | string[] | undefined>;
}

/** Inclusive byte offsets of a range to send, within the object. */
export interface ByteRange {
  start: number;
  end: number;
}

/** What `openRange` found: a range with its bytes, the whole object (`range` null), or a range past the end. */
export type RangedOpen =
  | { range: ByteRange | null; stream: Readable; info: ObjectInfo; download: DownloadHeaders }
  | { range: 'unsatisfiable'; stream?: undefined; info: ObjectInfo; download: DownloadHeaders };

/**
 * The one byte range a GET asks for (RFC 9110 §14.1.2, §14.2), in an object of
 * `info.size` bytes: `a-b` (b clamped to the last byte), `a-`, and the suffix
 * `-n` (the whole object when shorter than n). 'unsatisfiable' when the range
 * starts at or past the end, or is `-0`. null (send the whole object, 200)
 * for no header, another unit, a malformed or backwards (`5-3`) range, several
 * ranges (no multipart/byteranges), a suffix of an empty object (no 206 can
 * describe zero bytes), and an `If-Range` that is not exactly the object's
 * strong ETag (a date or a weak tag never matches: no Last-Modified is sent).
 */
export function rangeOf(value: string | undefined, ifRange: string | undefined, info: Pick<ObjectInfo, 'size' | 'etag'>): ByteRange | 'unsatisfiable' | null {
  if (value === undefined) return null;
  if (ifRange !== undefined && ifRange.trim() !== info.etag) return null;
  const unit = /^\s*bytes=(.*)$/i.exec(value);
  if (!unit) return null;
  // A list may hold empty elements (RFC 9110 §5.6.1); exactly one range is served.
  const specs = unit[1]!.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (specs.length !== 1) return null;
  const spec = /^(?:(\d+)-(\d*)|-(\d+))$/.exec(specs[0]!);
  if (!spec) return null;
  const { size } = info;
  if (spec[3] !== undefined) {
    const suffix = Number(spec[3]);
    if (suffix === 0) return 'unsatisfiable';
    if (size === 0) return null;
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const first = Number(spec[1]);
  const last = spec[2] === '' ? Infinity : Number(spec[2]);
  if (last < first) return null;
  if (first >= size) return 'unsatisfiable';
  return { start: first, end: Math.min(last, size - 1) };
}

/**
 * The embedded object store: objects are files under `root/objects`, with a
 * small JSON sidecar under `root/meta` holding type and checksum. Uploads
 * stream to `root/tmp` and are moved into place only when complete and
 * within their limit, so a half-written object is never visible.
 *
 * Objects are written once. A key whose object exists is never written again:
 * a PUT with the very same bytes is answered as the first one was (a client
 * retrying after a lost answer), any other is refused; a key the server
 * deleted keeps a tombstone in place of its metadata, so its URL cannot write
 * it again. One writer per key at a time, and capped uploads per owner and per
 * server, held in this process (the disk store is single-node).
 */
export class DiskStore implements ObjectStore {
  readonly kind = 'disk' as const;
  readonly bucket: string;
  private readonly objectsDir: string;
  private readonly metaDir: string;
  private readonly tmpDir: string;
  /** Multipart uploads in progress, one directory per upload id (see `createMultipart`). */
  private readonly multipartDir: string;
  private readonly signer: SigV4Signer;
  private readonly origin: string;
  private readonly host: string;
  private readonly slots: UploadSlots;
  /** Commits and deletes in progress, by key (see `exclusive`). */
  private readonly keyLocks = new Map<string, Promise<void>>();
  private readonly ownerOf: (key: string) => string | null;
  private readonly defaultDownload: (contentType: string | null) => DownloadHeaders;

  constructor(options: DiskStoreOptions) {
    this.bucket = options.bucket ?? 'keyframe';
    this.slots = new UploadSlots({ perOwner: options.maxUploadsPerOwner ?? 8, total: options.maxUploads ?? 64 });
    this.ownerOf = options.ownerOf ?? (() => null);
    this.defaultDownload =
      options.downloadHeaders ?? ((contentType) => ({ contentType: contentType ?? 'application/octet-stream', contentDisposition: 'attachment' }));
    this.objectsDir = path.join(options.root, 'objects');
    this.metaDir = path.join(options.root, 'meta');
    this.tmpDir = path.join(options.root, 'tmp');
    this.multipartDir = path.join(options.root, 'multipart');
    const url = new URL(options.publicUrl);
    this.origin = url.origin;
    this.host = url.host;
    this.signer = new SigV4Signer({
      accessKeyId: 'keyframe',
      secretAccessKey: options.signingSecret,
      region: 'us-east-1',
      service: 's3',
    });
  }

  /** Creates the directories and removes temporary files a crash may have left. */
  async init(): Promise<void> {
    await fsp.rm(this.tmpDir, { recursive: true, force: true });
    await Promise.all(
      [this.objectsDir, this.metaDir, this.tmpDir, this.multipartDir].map(async (d) => {
        await fsp.mkdir(d, { recursive: true, mode: DIR_MODE });
        // Directories of an older version were created under the umask (often world-readable).
        await fsp.chmod(d, DIR_MODE);
      }),
    );
    await this.sweepMultipart();
  }

  /** Client PUTs in progress right now. */
  get uploadsInProgress(): number {
    return this.slots.uploadsInProgress;
  }

  /** URL path prefix (below the public URL) that the HTTP layer routes to `receive`. */
  get routePrefix(): string {
    return `/${this.bucket}/`;
  }

  async presignPut(input: PresignPutInput): Promise<string> {
    return this.signer.presign({
      method: 'PUT',
      origin: this.origin,
      pathSegments: [this.bucket, ...this.segments(input.key)],
      query: { [MAX_BYTES_PARAM]: String(input.maxBytes) },
      headers: signedUploadHeaders(input),
      expiresInSeconds: input.expiresInSeconds,
    });
  }

  /** As on S3, `response` travels as signed `response-content-*` parameters, which `open` answers with. */
  async presignGet(key: string, expiresInSeconds: number, response?: DownloadHeaders): Promise<string> {
    return this.signer.presign({
      method: 'GET',
      origin: this.origin,
      pathSegments: [this.bucket, ...this.segments(key)],
      ...(response === undefined
        ? {}
        : { query: { [RESPONSE_TYPE_PARAM]: response.contentType, [RESPONSE_DISPOSITION_PARAM]: response.contentDisposition } }),
      expiresInSeconds,
    });
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const meta = await this.readMeta(key);
    if (!meta || isTombstone(meta)) return null;
    const stat = await fsp.stat(this.objectPath(key)).catch(() => null);
    if (!stat) return null;
    return { size: stat.size, contentType: meta.contentType, etag: etagOf(meta.sha256), sha256: meta.sha256 };
  }

  async getRange(key: string, start: number, end: number): Promise<Buffer | null> {
    // Through openWithMeta, so an object whose delete a crash interrupted (a tombstone beside it) reads as gone.
    const opened = await this.openWithMeta(key);
    if (!opened) return null;
    const { handle } = opened;
    try {
      const buffer = Buffer.alloc(Math.max(0, end - start + 1));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
      return buffer.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  /**
   * Opens the object file first, then reads its metadata: objects are written
   * once (see `commit`), so metadata found after the open describes the very
   * file the descriptor holds, and a later delete cannot swap the bytes under
   * the reader (the stream reads the open descriptor, not the path).
   */
  async openVerified(key: string, etag: string): Promise<Readable | 'changed' | 'missing'> {
    const opened = await this.openWithMeta(key);
    if (!opened) return 'missing';
    if (etagOf(opened.meta.sha256) !== etag) {
      await opened.handle.close();
      return 'changed';
    }
    return opened.handle.createReadStream();
  }

  /**
   * Write-once as client PUTs are: the same bytes again succeed, other bytes
   * (or a deleted key) throw StorageRefusal 403, a key being written 409.
   */
  async put(key: string, body: Readable, contentType: string): Promise<void> {
    const release = this.slots.acquire(key, null);
    try {
      await this.writeOnce(key, body, contentType, Number.MAX_SAFE_INTEGER);
    } finally {
      release();
    }
  }

  /**
   * Replaces the metadata with a tombstone, then removes the object: a crash
   * in between leaves a tombstone beside the file, which every reader treats
   * as gone and every writer refuses. Runs exclusive of a commit of the key,
   * so a write under way cannot put its metadata over the tombstone; it does
   * not wait for a body still arriving.
   */
  async delete(key: string): Promise<void> {
    await this.exclusive(key, async () => {
      await fsp.mkdir(path.dirname(this.metaPath(key)), { recursive: true, mode: DIR_MODE });
      await this.writeMeta(key, { deleted: true });
      await fsp.rm(this.objectPath(key), { force: true });
    });
  }

  /**
   * Walks the object files under the prefix's folder. A file beside a tombstone (a delete a
   * crash interrupted) or without metadata (a commit a crash interrupted) is no object to
   * any reader, so it is not listed either.
   */
  async *list(prefix: string): AsyncIterable<ListedObject> {
    const slash = prefix.lastIndexOf('/');
    const folder = slash < 0 ? '' : prefix.slice(0, slash);
    const start = folder === '' ? this.objectsDir : path.join(this.objectsDir, ...this.segments(folder));
    const entries = await fsp.readdir(start, { recursive: true, withFileTypes: true }).catch((err: unknown) => {
      if (isNotFound(err)) return [];
      throw err;
    });
    for (const entry of entries) {
      if (!entry.isFile()) continue;
      const file = path.join(entry.parentPath, entry.name);
      const key = path.relative(this.objectsDir, file).split(path.sep).join('/');
      if (!key.startsWith(prefix)) continue;
      const meta = await this.readMeta(key).catch(() => null);
      if (!meta || isTombstone(meta)) continue;
      const stat = await fsp.stat(file).catch(() => null);
      if (stat) yield { key, size: stat.size, lastModified: stat.mtime };
    }
  }

  /** Runs `fn` after every earlier `exclusive` of the same key has finished: for the few filesystem steps of a commit or a delete. */
  private async exclusive<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.keyLocks.get(key) ?? Promise.resolve();
    let release!: () => void;
    const done = new Promise<void>((resolve) => (release = resolve));
    const mine = previous.then(() => done);
    this.keyLocks.set(key, mine);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.keyLocks.get(key) === mine) this.keyLocks.delete(key);
    }
  }

  /**
   * Handles a PUT to a presigned URL: checks the signature, the declared type
   * and length, then streams the body to disk. Throws StorageRefusal for every
   * refusal; nothing is stored unless the whole body arrived within the limit.
   * `onAccepted` runs once the request passed every check that needs no body.
   */
  async receive(request: SignedObjectRequest, body: Readable, onAccepted?: () => void): Promise<ReceivedObject> {
    const { key, params } = this.authorise(request);
    // A part URL is for `receivePart` only: it binds no type, so it must never write an object.
    if (params.has(UPLOAD_ID_PARAM) || params.has(PART_NUMBER_PARAM)) throw StorageRefusal.accessDenied();
    const contentType = header(request.headers, 'content-type') ?? '';
    const maxBytes = Number(params.get(MAX_BYTES_PARAM));
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw StorageRefusal.accessDenied();
    const declaredLength = header(request.headers, 'content-length');
    if (declaredLength !== undefined && Number(declaredLength) > maxBytes) throw StorageRefusal.tooLarge(maxBytes);
    // One writer per key, and the owner's and the server's caps; refused before any file is opened.
    const release = this.slots.acquire(key, { owner: this.ownerOf(key) });
    try {
      // Only once the request passed every check may a client waiting on `Expect: 100-continue` send its body.
      return await this.writeOnce(key, body, contentType, maxBytes, declaredLength, onAccepted);
    } finally {
      release();
    }
  }

  // Multipart uploads. An upload is a directory `multipart/<uploadId>` (24 random bytes, base64url)
  // holding `upload.json` (key, type, creation time) and one file per part, `<partNumber>.part`: the
  // part's bytes followed by their hex SHA-256 (PART_TRAILER_BYTES). A part arrives in a temporary
  // file beside it and is renamed into place, so a part is whole or absent, its checksum with it, and
  // a second PUT of a part number replaces the first in one step (as on S3). Uploads survive a
  // restart: `init` removes only the temporary files. A part's ETag is the store's own scheme
  // (`etagOf` its SHA-256), and so is the completed object's: not S3's MD5-of-MD5s `"…-N"`.

  async createMultipart(input: { key: string; contentType: string }): Promise<{ uploadId: string }> {
    this.segments(input.key);
    const uploadId = randomBytes(24).toString('base64url');
    const dir = this.uploadDir(uploadId);
    await fsp.mkdir(dir, { mode: DIR_MODE });
    const record: UploadRecord = { key: input.key, contentType: input.contentType, createdAt: new Date().toISOString() };
    // Whole or absent: a directory without its record is swept at start-up and reads as no upload.
    const tmp = path.join(dir, `.${randomBytes(8).toString('hex')}.tmp`);
    await fsp.writeFile(tmp, JSON.stringify(record), { flush: true, mode: FILE_MODE, flag: 'wx' });
    await fsp.rename(tmp, path.join(dir, UPLOAD_RECORD));
    return { uploadId };
  }

  /** Signed like an object URL, with `partNumber` and `uploadId` in the signed query and, when given, `content-length`. */
  async presignPart(input: { key: string; uploadId: string; partNumber: number; contentLength: number | null; expiresInSeconds: number }): Promise<string> {
    if (!UPLOAD_ID.test(input.uploadId)) throw new MultipartError('NoSuchUpload', 'The specified upload does not exist');
    checkPartInput(input);
    const length = input.contentLength;
    return this.signer.presign({
      method: 'PUT',
      origin: this.origin,
      pathSegments: [this.bucket, ...this.segments(input.key)],
      query: { [PART_NUMBER_PARAM]: String(input.partNumber), [UPLOAD_ID_PARAM]: input.uploadId },
      headers: length === null ? {} : { 'content-length': String(length) },
      expiresInSeconds: input.expiresInSeconds,
    });
  }

  /**
   * Handles a PUT to a presigned part URL (query `partNumber` and `uploadId`):
   * checks the signature and the upload, takes a slot of the owner's and the
   * server's caps (as a single PUT does), streams at most `maxPartBytes` (or
   * exactly the signed Content-Length) to a temporary file, then renames it
   * into place. Throws StorageRefusal for every refusal.
   */
  async receivePart(request: SignedObjectRequest, body: Readable, onAccepted?: () => void): Promise<UploadedPart> {
    const { key, params } = this.authorise(request);
    const uploadId = params.get(UPLOAD_ID_PARAM) ?? '';
    const partNumber = Number(params.get(PART_NUMBER_PARAM));
    if (!UPLOAD_ID.test(uploadId) || !isPartNumber(partNumber) || String(partNumber) !== params.get(PART_NUMBER_PARAM)) {
      throw StorageRefusal.accessDenied();
    }
    const limit = MULTIPART_LIMITS.maxPartBytes;
    const declaredLength = header(request.headers, 'content-length');
    if (declaredLength !== undefined && Number(declaredLength) > limit) throw StorageRefusal.tooLarge(limit);
    const record = await this.readUpload(uploadId);
    if (record === null || record.key !== key) throw StorageRefusal.noSuchUpload();
    // One writer per part (a retry racing its first attempt gets 409), within the owner's and the server's caps.
    const release = this.slots.acquire(`${key}?uploadId=${uploadId}&partNumber=${partNumber}`, { owner: this.ownerOf(key) });
    const tmp = path.join(this.uploadDir(uploadId), `.${partNumber}.${randomBytes(8).toString('hex')}.tmp`);
    try {
      let file: fsp.FileHandle;
      try {
        file = await fsp.open(tmp, 'wx', FILE_MODE);
      } catch (err) {
        // Aborted or completed since the record was read.
        if (isNotFound(err)) throw StorageRefusal.noSuchUpload();
        throw err;
      }
      onAccepted?.();
      const { size, sha256 } = await this.receiveBody(body, file, limit, declaredLength, () => StorageRefusal.tooLarge(limit));
      try {
        await fsp.appendFile(tmp, sha256, { flush: true });
        await fsp.rename(tmp, this.partPath(uploadId, partNumber));
      } catch (err) {
        if (isNotFound(err)) throw StorageRefusal.noSuchUpload();
        throw err;
      }
      return { partNumber, size, etag: etagOf(sha256) };
    } finally {
      release();
      await fsp.rm(tmp, { force: true });
    }
  }

  async listParts(key: string, uploadId: string): Promise<UploadedPart[] | 'missing'> {
    const record = await this.readUpload(uploadId);
    if (record === null || record.key !== key) return 'missing';
    let names: string[];
    try {
      names = await fsp.readdir(this.uploadDir(uploadId));
    } catch (err) {
      if (isNotFound(err)) return 'missing';
      throw err;
    }
    const parts: UploadedPart[] = [];
    for (const name of names) {
      const match = PART_FILE.exec(name);
      if (!match) continue;
      const opened = await this.openPart(uploadId, Number(match[1]));
      if (!opened) continue;
      await opened.handle.close();
      parts.push(opened.part);
    }
    return parts.sort((a, b) => a.partNumber - b.partNumber);
  }

  /**
   * Under `exclusive(key)` and the key's writer slot: checks the list against
   * the parts received (MultipartError), streams the parts in order into one
   * temporary file computing the SHA-256 in the same pass (constant memory),
   * commits it as a single PUT is committed (metadata, then the hard link: the
   * commit point), then removes the upload. A crash before the link leaves no
   * object (the temporary file is swept at start-up) and the upload with its
   * parts, which can be completed again; a crash after it, the object and the
   * upload: completing again hashes the parts and, as they are the stored
   * bytes, answers the object and removes the upload.
   */
  async completeMultipart(key: string, uploadId: string, parts: { partNumber: number; etag: string }[]): Promise<ObjectInfo> {
    this.segments(key);
    return this.exclusive(key, async () => {
      const record = await this.readUpload(uploadId);
      const received = record === null || record.key !== key ? 'missing' : await this.listParts(key, uploadId);
      if (record === null || received === 'missing') throw new MultipartError('NoSuchUpload', 'The specified upload does not exist');
      const chosen = checkCompletion(parts, received);
      const release = this.slots.acquire(key, null);
      try {
        const existing = await this.existing(key);
        if (existing === 'deleted') throw StorageRefusal.alreadyWritten();
        if (existing !== null) {
          const { size, sha256 } = await this.assemble(uploadId, chosen, null);
          if (size !== existing.size || sha256 !== existing.sha256) throw StorageRefusal.alreadyWritten();
          await this.dropUpload(uploadId);
          return { size, contentType: existing.contentType, etag: etagOf(sha256), sha256 };
        }
        await fsp.mkdir(path.dirname(this.objectPath(key)), { recursive: true, mode: DIR_MODE });
        await fsp.mkdir(path.dirname(this.metaPath(key)), { recursive: true, mode: DIR_MODE });
        const tmp = path.join(this.tmpDir, `${randomBytes(12).toString('hex')}.part`);
        let assembled: { size: number; sha256: string };
        try {
          assembled = await this.assemble(uploadId, chosen, tmp);
          await this.commitHeld(key, tmp, { contentType: record.contentType, ...assembled });
        } finally {
          await fsp.rm(tmp, { force: true });
        }
        await this.dropUpload(uploadId);
        return { size: assembled.size, contentType: record.contentType, etag: etagOf(assembled.sha256), sha256: assembled.sha256 };
      } finally {
        release();
      }
    });
  }

  async abortMultipart(key: string, uploadId: string): Promise<void> {
    // Exclusive of a completion of the key, so an abort never pulls parts from under an assembly.
    await this.exclusive(key, async () => {
      const record = await this.readUpload(uploadId);
      if (record === null || record.key !== key) return;
      await this.dropUpload(uploadId);
    });
  }

  /** Uploads whose `upload.json` says they were created before `before` (for the sweep's orphan check). */
  async staleMultipartUploads(before: Date): Promise<{ key: string; uploadId: string }[]> {
    const stale: { key: string; uploadId: string }[] = [];
    for (const uploadId of await fsp.readdir(this.multipartDir)) {
      const record = await this.readUpload(uploadId).catch(() => null);
      if (record !== null && Date.parse(record.createdAt) < before.getTime()) stale.push({ key: record.key, uploadId });
    }
    return stale;
  }

  /**
   * The parts' bytes in order, through SHA-256 and, with `target`, into that
   * new file (synced and closed). Each part is opened as it comes and must
   * still have the ETag it was chosen with (a part replaced since: InvalidPart).
   */
  private async assemble(uploadId: string, chosen: UploadedPart[], target: string | null): Promise<{ size: number; sha256: string }> {
    const hash = createHash('sha256');
    let size = 0;
    const openPart = (partNumber: number) => this.openPart(uploadId, partNumber);
    async function* bytes(): AsyncGenerator<Buffer> {
      for (const wanted of chosen) {
        const opened = await openPart(wanted.partNumber);
        if (!opened || !sameEtag(opened.part.etag, wanted.etag)) {
          await opened?.handle.close();
          throw new MultipartError('InvalidPart', `Part ${wanted.partNumber} changed while the upload was completed`);
        }
        try {
          if (opened.part.size === 0) continue;
          for await (const chunk of opened.handle.createReadStream({ start: 0, end: opened.part.size - 1, autoClose: false })) {
            hash.update(chunk as Buffer);
            size += (chunk as Buffer).length;
            yield chunk as Buffer;
          }
        } finally {
          await opened.handle.close();
        }
      }
    }
    if (target === null) {
      for await (const _chunk of bytes());
    } else {
      const file = await fsp.open(target, 'wx', FILE_MODE);
      try {
        await pipeline(Readable.from(bytes(), { objectMode: false }), file.createWriteStream({ flush: true, highWaterMark: WRITE_BATCH_BYTES }));
      } catch (err) {
        await file.close().catch(() => {});
        throw err;
      }
    }
    return { size, sha256: hash.digest('hex') };
  }

  /** A received part: its open file (the caller closes it), size and ETag read from that file. Null when absent. */
  private async openPart(uploadId: string, partNumber: number): Promise<{ handle: fsp.FileHandle; part: UploadedPart } | null> {
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(this.partPath(uploadId, partNumber), 'r');
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    try {
      const { size: fileSize } = await handle.stat();
      const trailer = Buffer.alloc(PART_TRAILER_BYTES);
      const { bytesRead } = fileSize >= PART_TRAILER_BYTES ? await handle.read(trailer, 0, PART_TRAILER_BYTES, fileSize - PART_TRAILER_BYTES) : { bytesRead: 0 };
      const sha256 = trailer.toString('latin1');
      // Only renamed into place once whole, so this is a file nobody wrote: skip it rather than guess.
      if (bytesRead !== PART_TRAILER_BYTES || !/^[0-9a-f]{64}$/.test(sha256)) {
        await handle.close();
        return null;
      }
      return { handle, part: { partNumber, size: fileSize - PART_TRAILER_BYTES, etag: etagOf(sha256) } };
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  private async readUpload(uploadId: string): Promise<UploadRecord | null> {
    if (!UPLOAD_ID.test(uploadId)) return null;
    try {
      return JSON.parse(await fsp.readFile(path.join(this.uploadDir(uploadId), UPLOAD_RECORD), 'utf8')) as UploadRecord;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /** Moves the upload's directory out of `multipart/` in one step (gone for every reader), then removes it. */
  private async dropUpload(uploadId: string): Promise<void> {
    const gone = path.join(this.tmpDir, `${randomBytes(12).toString('hex')}.dropped`);
    try {
      await fsp.rename(this.uploadDir(uploadId), gone);
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    await fsp.rm(gone, { recursive: true, force: true });
  }

  /** At start-up: removes what a crash left of part writes, and upload directories without their record. */
  private async sweepMultipart(): Promise<void> {
    for (const entry of await fsp.readdir(this.multipartDir)) {
      const dir = path.join(this.multipartDir, entry);
      const names = UPLOAD_ID.test(entry) ? await fsp.readdir(dir).catch(() => null) : null;
      if (names === null || !names.includes(UPLOAD_RECORD)) {
        await fsp.rm(dir, { recursive: true, force: true });
        continue;
      }
      await Promise.all(names.filter((n) => n.endsWith('.tmp')).map((n) => fsp.rm(path.join(dir, n), { force: true })));
    }
  }

  /** Only for ids `UPLOAD_ID` accepts (checked by every caller), so the path cannot leave the store. */
  private uploadDir(uploadId: string): string {
    if (!UPLOAD_ID.test(uploadId)) throw new MultipartError('NoSuchUpload', 'The specified upload does not exist');
    return path.join(this.multipartDir, uploadId);
  }

  private partPath(uploadId: string, partNumber: number): string {
    return path.join(this.uploadDir(uploadId), `${partNumber}.part`);
  }

  /**
   * Serves a GET of a presigned download URL, with the response headers the
   * URL names (signed `response-content-*`), else the ones the stored type
   * gets by default. The stream reads the descriptor opened before the
   * metadata was read, so it is the object that metadata describes.
   */
  async open(request: SignedObjectRequest): Promise<{ stream: Readable; info: ObjectInfo; download: DownloadHeaders }> {
    const { handle, info, download } = await this.openSigned(request);
    return { stream: handle.createReadStream(), info, download };
  }

  /**
   * `open` answering the request's `Range` (RFC 9110 §14): one byte range
   * (`bytes=a-b`, `bytes=a-`, `bytes=-n`) streams just those bytes from the
   * descriptor whose metadata was checked (`range` says which); a range past
   * the end is 'unsatisfiable' (no stream, the file closed); anything else
   * (no header, malformed, several ranges, an `If-Range` other than the
   * object's ETag) streams the whole object with `range` null. The signature
   * is checked before the file is opened, as by `open`.
   */
  async openRange(request: SignedObjectRequest): Promise<RangedOpen> {
    const { handle, info, download } = await this.openSigned(request);
    const range = rangeOf(header(request.headers, 'range'), header(request.headers, 'if-range'), info);
    if (range === 'unsatisfiable') {
      await handle.close();
      return { range, info, download };
    }
    const stream = range === null ? handle.createReadStream() : handle.createReadStream({ start: range.start, end: range.end });
    return { range, stream, info, download };
  }

  /** The signature checked, then the object's open file, its info and the headers its download answers with. */
  private async openSigned(request: SignedObjectRequest): Promise<{ handle: fsp.FileHandle; info: ObjectInfo; download: DownloadHeaders }> {
    const { key, params } = this.authorise(request);
    const opened = await this.openWithMeta(key);
    if (!opened) throw StorageRefusal.noSuchKey();
    const { handle, meta, size } = opened;
    const info: ObjectInfo = { size, contentType: meta.contentType, etag: etagOf(meta.sha256), sha256: meta.sha256 };
    const named = params.get(RESPONSE_TYPE_PARAM);
    const disposition = params.get(RESPONSE_DISPOSITION_PARAM);
    const fallback = this.defaultDownload(meta.contentType);
    const download: DownloadHeaders = {
      contentType: named ?? fallback.contentType,
      contentDisposition: disposition === 'inline' || disposition === 'attachment' ? disposition : fallback.contentDisposition,
    };
    return { handle, info, download };
  }

  /** The object's open file, its metadata and size; null when there is none (or only a tombstone). */
  private async openWithMeta(key: string): Promise<{ handle: fsp.FileHandle; meta: StoredMeta; size: number } | null> {
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(this.objectPath(key), 'r');
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    try {
      const meta = await this.readMeta(key);
      if (!meta || isTombstone(meta)) {
        await handle.close();
        return null;
      }
      return { handle, meta, size: (await handle.stat()).size };
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  private authorise(request: SignedObjectRequest): { key: string; params: Map<string, string> } {
    const q = request.rawUrl.indexOf('?');
    const rawPath = q < 0 ? request.rawUrl : request.rawUrl.slice(0, q);
    const rawQuery = q < 0 ? '' : request.rawUrl.slice(q + 1);
    let segments: string[];
    try {
      segments = rawPath.split('/').slice(1).map(decodeURIComponent);
    } catch {
      throw StorageRefusal.signatureMismatch();
    }
    if (rawQuery === '') throw StorageRefusal.accessDenied();
    const result = this.signer.verify({
      method: request.method,
      host: this.host,
      pathSegments: segments,
      rawQuery,
      headers: request.headers,
    });
    if (!result.ok) {
      if (result.reason === 'expired') throw StorageRefusal.expired();
      if (result.reason === 'malformed') throw StorageRefusal.accessDenied();
      throw StorageRefusal.signatureMismatch();
    }
    // Every object PUT binds its type; a part has none of its own (the upload has it), as on S3.
    const isPart = result.params.has(UPLOAD_ID_PARAM) || result.params.has(PART_NUMBER_PARAM);
    if (request.method === 'PUT' && !isPart && !result.signedHeaders.includes('content-type')) throw StorageRefusal.accessDenied();
    if (segments[0] !== this.bucket) throw StorageRefusal.accessDenied();
    const keySegments = segments.slice(1);
    // The signature makes these checks redundant for URLs we signed; they keep the
    // filesystem safe even if a signing secret ever leaked.
    if (keySegments.length === 0 || !keySegments.every((s) => SAFE_SEGMENT.test(s))) throw StorageRefusal.accessDenied();
    return { key: keySegments.join('/'), params: result.params };
  }

  /**
   * Writes `key` once. The caller holds the key's writer slot, so nothing else
   * writes this key while this runs. A key with an object already: the body is
   * hashed only (no file) and must be the stored bytes; a deleted key is refused.
   */
  private async writeOnce(
    key: string,
    body: Readable,
    contentType: string,
    maxBytes: number,
    declaredLength?: string,
    onAccepted?: () => void,
  ): Promise<ReceivedObject> {
    const existing = await this.existing(key);
    if (existing === 'deleted') throw StorageRefusal.alreadyWritten();
    if (existing !== null) {
      if (declaredLength !== undefined && Number(declaredLength) !== existing.size) throw StorageRefusal.alreadyWritten();
      onAccepted?.();
      const { size, sha256 } = await this.receiveBody(body, null, existing.size, declaredLength, StorageRefusal.alreadyWritten);
      if (size !== existing.size || sha256 !== existing.sha256) throw StorageRefusal.alreadyWritten();
      return { key, size, sha256, etag: etagOf(sha256), contentType: existing.contentType };
    }
    onAccepted?.();
    // Every check passed: only now is a file created.
    const tmp = path.join(this.tmpDir, `${randomBytes(12).toString('hex')}.part`);
    const file = await fsp.open(tmp, 'wx', FILE_MODE);
    try {
      const { size, sha256 } = await this.receiveBody(body, file, maxBytes, declaredLength, () => StorageRefusal.tooLarge(maxBytes));
      await this.commit(key, tmp, { contentType, sha256, size });
      return { key, size, sha256, etag: etagOf(sha256), contentType };
    } finally {
      // After a commit the object is a second link to this file; otherwise the file is all there is.
      await fsp.rm(tmp, { force: true });
    }
  }

  /**
   * Streams `body` through SHA-256 and, with `file`, into it (synced and
   * closed on the way). More than `limit` bytes throws `overLimit()`; fewer than
   * a declared length, or a body cut off, IncompleteBody.
   */
  private async receiveBody(
    body: Readable,
    file: fsp.FileHandle | null,
    limit: number,
    declaredLength: string | undefined,
    overLimit: () => StorageRefusal,
  ): Promise<{ size: number; sha256: string }> {
    const hash = createHash('sha256');
    const noteReceived = file ? syncWhileArriving(file) : () => {};
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        size += chunk.length;
        if (size > limit) return callback(overLimit());
        hash.update(chunk);
        noteReceived(size);
        callback(null, chunk);
      },
    });
    try {
      if (file) {
        // The stream syncs and closes the file; FileHandle.close waits for an early sync still in flight.
        await pipeline(body, meter, file.createWriteStream({ flush: true, highWaterMark: WRITE_BATCH_BYTES }));
      } else {
        await pipeline(body, meter, new Writable({ write: (_chunk, _encoding, callback) => callback() }));
      }
    } catch (err) {
      if (file) await file.close().catch(() => {});
      if (err instanceof StorageRefusal) throw err;
      if (isAbort(err)) throw StorageRefusal.incompleteBody();
      throw err;
    }
    if (declaredLength !== undefined && Number(declaredLength) !== size) throw StorageRefusal.incompleteBody();
    return { size, sha256: hash.digest('hex') };
  }

  /**
   * What is stored under `key`: its metadata when its object exists, 'deleted'
   * for a tombstone, null when nothing was committed. An object is looked for
   * first: metadata without an object is a commit a crash cut short, and counts
   * as nothing (the next write replaces it).
   */
  private async existing(key: string): Promise<StoredMeta | 'deleted' | null> {
    const meta = await this.readMeta(key);
    if (meta && isTombstone(meta)) return 'deleted';
    const stat = await fsp.stat(this.objectPath(key)).catch((err: unknown) => {
      if (isNotFound(err)) return null;
      throw err;
    });
    if (!stat) return null;
    // An object without metadata is never committed (see `commit`); refuse to touch one rather than guess.
    if (!meta) return 'deleted';
    return meta;
  }

  /**
   * Makes a complete, synced temporary file the object of `key`, with its
   * metadata. The order is what makes object and metadata change together:
   *
   * 1. the metadata goes to a temporary file, synced, and is renamed into
   *    `meta/` (replacing only the leftovers of a cut-short commit: a key with
   *    an object or a tombstone never gets here);
   * 2. the object is hard-linked into `objects/` (link, unlike rename, fails if
   *    the target exists, so even a bug elsewhere cannot replace an object).
   *    This is the commit point; the temporary name is removed afterwards.
   *
   * Killed before 1: nothing but a temporary file, swept at start-up. Between 1
   * and 2: metadata without an object, which every reader and writer treats as
   * "not there". After 2: both, matching, for good (objects are never rewritten,
   * and the metadata is only ever replaced by a tombstone). With one writer per
   * key, no other commit of the key can interleave, and a delete waits for
   * these two steps (and they for it).
   */
  private async commit(key: string, tmpObject: string, meta: StoredMeta): Promise<void> {
    const target = this.objectPath(key);
    await fsp.mkdir(path.dirname(target), { recursive: true, mode: DIR_MODE });
    await fsp.mkdir(path.dirname(this.metaPath(key)), { recursive: true, mode: DIR_MODE });
    await this.exclusive(key, () => this.commitHeld(key, tmpObject, meta));
  }

  /** The two steps of `commit`, for a caller that holds `exclusive(key)` already (a multipart completion). */
  private async commitHeld(key: string, tmpObject: string, meta: StoredMeta): Promise<void> {
    // A delete while the body arrived left a tombstone: the key is done with.
    const current = await this.readMeta(key);
    if (current && isTombstone(current)) throw StorageRefusal.alreadyWritten();
    await this.writeMeta(key, meta);
    try {
      await fsp.link(tmpObject, this.objectPath(key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException)?.code === 'EEXIST') throw StorageRefusal.alreadyWritten();
      throw err;
    }
  }

  private async writeMeta(key: string, meta: StoredMeta | Tombstone): Promise<void> {
    const tmp = path.join(this.tmpDir, `${randomBytes(12).toString('hex')}.meta`);
    try {
      await fsp.writeFile(tmp, JSON.stringify(meta), { flush: true, mode: FILE_MODE, flag: 'wx' });
      await fsp.rename(tmp, this.metaPath(key));
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
  }

  private async readMeta(key: string): Promise<StoredMeta | Tombstone | null> {
    try {
      return JSON.parse(await fsp.readFile(this.metaPath(key), 'utf8')) as StoredMeta | Tombstone;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  private segments(key: string): string[] {
    const segments = key.split('/');
    if (!segments.every((s) => SAFE_SEGMENT.test(s))) throw new Error(`unsafe object key for the disk store: ${JSON.stringify(key)}`);
    return segments;
  }

  /** The file of a key; keys are checked segment by segment, so the path cannot leave the store. */
  private objectPath(key: string): string {
    return path.join(this.objectsDir, ...this.segments(key));
  }

  private metaPath(key: string): string {
    return path.join(this.metaDir, ...this.segments(key)) + '.json';
  }
}

/**
 * Bytes the file stream may hold while a write is in flight. With the default
 * 16 KiB every 64 KiB socket chunk paused the socket until its own write ended;
 * with 1 MiB the socket keeps flowing and the queued chunks go down in one
 * writev, so receiving, hashing and writing overlap.
 */
const WRITE_BATCH_BYTES = 1024 * 1024;

/** Only the Keyframe process reads the store's files: the data dir may hold secrets next to them. */
const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

const etagOf = (sha256: string) => `"${sha256.slice(0, 32)}"`;

function header(headers: SignedObjectRequest['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

const isNotFound = (err: unknown) => (err as NodeJS.ErrnoException)?.code === 'ENOENT';
const isAbort = (err: unknown) =>
  ['ERR_STREAM_PREMATURE_CLOSE', 'ECONNRESET', 'ABORT_ERR'].includes((err as NodeJS.ErrnoException)?.code ?? '');
