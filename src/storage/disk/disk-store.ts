import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { signedUploadHeaders, type ObjectInfo, type ObjectStore, type PresignPutInput } from '../object-store.js';
import { SigV4Signer } from '../sigv4.js';
import { syncWhileArriving } from './early-sync.js';
import { StorageRefusal } from './storage-refusal.js';

/** Signed into every disk upload URL, so the limit travels with the URL and needs no lookup. */
const MAX_BYTES_PARAM = 'x-keyframe-max-bytes';
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

/** A signed request as it arrives at the disk store's HTTP endpoint. */
export interface SignedObjectRequest {
  method: 'PUT' | 'GET';
  /** Path and query exactly as received, e.g. /keyframe/users/...?X-Amz-... */
  rawUrl: string;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * The embedded object store: objects are files under `root/objects`, with a
 * small JSON sidecar under `root/meta` holding type and checksum. Uploads
 * stream to `root/tmp` and are renamed into place only when complete and
 * within their limit, so a half-written object is never visible.
 */
export class DiskStore implements ObjectStore {
  readonly kind = 'disk' as const;
  readonly bucket: string;
  private readonly objectsDir: string;
  private readonly metaDir: string;
  private readonly tmpDir: string;
  private readonly signer: SigV4Signer;
  private readonly origin: string;
  private readonly host: string;

  constructor(options: DiskStoreOptions) {
    this.bucket = options.bucket ?? 'keyframe';
    this.objectsDir = path.join(options.root, 'objects');
    this.metaDir = path.join(options.root, 'meta');
    this.tmpDir = path.join(options.root, 'tmp');
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
    await Promise.all([this.objectsDir, this.metaDir, this.tmpDir].map((d) => fsp.mkdir(d, { recursive: true })));
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

  async presignGet(key: string, expiresInSeconds: number): Promise<string> {
    return this.signer.presign({
      method: 'GET',
      origin: this.origin,
      pathSegments: [this.bucket, ...this.segments(key)],
      expiresInSeconds,
    });
  }

  async head(key: string): Promise<ObjectInfo | null> {
    const meta = await this.readMeta(key);
    if (!meta) return null;
    const stat = await fsp.stat(this.objectPath(key)).catch(() => null);
    if (!stat) return null;
    return { size: stat.size, contentType: meta.contentType, etag: etagOf(meta.sha256), sha256: meta.sha256 };
  }

  async getRange(key: string, start: number, end: number): Promise<Buffer | null> {
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(this.objectPath(key), 'r');
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    try {
      const buffer = Buffer.alloc(Math.max(0, end - start + 1));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
      return buffer.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  async put(key: string, body: Readable, contentType: string): Promise<void> {
    await this.writeAtomically(key, body, contentType, Number.MAX_SAFE_INTEGER);
  }

  async delete(key: string): Promise<void> {
    await fsp.rm(this.objectPath(key), { force: true });
    await fsp.rm(this.metaPath(key), { force: true });
  }

  /**
   * Handles a PUT to a presigned URL: checks the signature, the declared type
   * and length, then streams the body to disk. Throws StorageRefusal for every
   * refusal; nothing is stored unless the whole body arrived within the limit.
   * `onAccepted` runs once the request passed every check that needs no body.
   */
  async receive(request: SignedObjectRequest, body: Readable, onAccepted?: () => void): Promise<ReceivedObject> {
    const { key, params } = this.authorise(request);
    const contentType = header(request.headers, 'content-type') ?? '';
    const maxBytes = Number(params.get(MAX_BYTES_PARAM));
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw StorageRefusal.accessDenied();
    const declaredLength = header(request.headers, 'content-length');
    if (declaredLength !== undefined && Number(declaredLength) > maxBytes) throw StorageRefusal.tooLarge(maxBytes);
    // Only now may a client waiting on `Expect: 100-continue` send its body.
    onAccepted?.();
    const { size, sha256 } = await this.writeAtomically(key, body, contentType, maxBytes, declaredLength);
    return { key, size, sha256, etag: etagOf(sha256), contentType };
  }

  /** Serves a GET of a presigned download URL. */
  async open(request: SignedObjectRequest): Promise<{ stream: Readable; info: ObjectInfo }> {
    const { key } = this.authorise(request);
    const info = await this.head(key);
    if (!info) throw StorageRefusal.noSuchKey();
    return { stream: fs.createReadStream(this.objectPath(key)), info };
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
    if (request.method === 'PUT' && !result.signedHeaders.includes('content-type')) throw StorageRefusal.accessDenied();
    if (segments[0] !== this.bucket) throw StorageRefusal.accessDenied();
    const keySegments = segments.slice(1);
    // The signature makes these checks redundant for URLs we signed; they keep the
    // filesystem safe even if a signing secret ever leaked.
    if (keySegments.length === 0 || !keySegments.every((s) => SAFE_SEGMENT.test(s))) throw StorageRefusal.accessDenied();
    return { key: keySegments.join('/'), params: result.params };
  }

  private async writeAtomically(
    key: string,
    body: Readable,
    contentType: string,
    maxBytes: number,
    declaredLength?: string,
  ): Promise<{ size: number; sha256: string }> {
    const target = this.objectPath(key);
    const tmp = path.join(this.tmpDir, `${randomBytes(12).toString('hex')}.part`);
    const hash = createHash('sha256');
    const file = await fsp.open(tmp, 'wx');
    const noteReceived = syncWhileArriving(file);
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        size += chunk.length;
        if (size > maxBytes) return callback(StorageRefusal.tooLarge(maxBytes));
        hash.update(chunk);
        noteReceived(size);
        callback(null, chunk);
      },
    });
    try {
      // The stream syncs and closes the file; FileHandle.close waits for an early sync still in flight.
      await pipeline(body, meter, file.createWriteStream({ flush: true, highWaterMark: WRITE_BATCH_BYTES }));
      if (declaredLength !== undefined && Number(declaredLength) !== size) throw StorageRefusal.incompleteBody();
      const sha256 = hash.digest('hex');
      await fsp.mkdir(path.dirname(target), { recursive: true });
      await fsp.mkdir(path.dirname(this.metaPath(key)), { recursive: true });
      await this.writeMeta(key, { contentType, sha256, size });
      // The rename is the commit point: before it, the object does not exist.
      await fsp.rename(tmp, target);
      return { size, sha256 };
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      if (err instanceof StorageRefusal) throw err;
      if (isAbort(err)) throw StorageRefusal.incompleteBody();
      throw err;
    }
  }

  private async writeMeta(key: string, meta: StoredMeta): Promise<void> {
    const tmp = path.join(this.tmpDir, `${randomBytes(12).toString('hex')}.meta`);
    await fsp.writeFile(tmp, JSON.stringify(meta), { flush: true });
    await fsp.rename(tmp, this.metaPath(key));
  }

  private async readMeta(key: string): Promise<StoredMeta | null> {
    try {
      return JSON.parse(await fsp.readFile(this.metaPath(key), 'utf8')) as StoredMeta;
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

const etagOf = (sha256: string) => `"${sha256.slice(0, 32)}"`;

function header(headers: SignedObjectRequest['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

const isNotFound = (err: unknown) => (err as NodeJS.ErrnoException)?.code === 'ENOENT';
const isAbort = (err: unknown) =>
  ['ERR_STREAM_PREMATURE_CLOSE', 'ECONNRESET', 'ABORT_ERR'].includes((err as NodeJS.ErrnoException)?.code ?? '');
