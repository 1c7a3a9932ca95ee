import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListPartsCommand,
  paginateListObjectsV2,
  S3Client,
  S3ServiceException,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { S3Config } from '../../config.js';
import { checkPartInput, MULTIPART_LIMITS, MultipartError, type MultipartErrorCode, type UploadedPart } from '../multipart.js';
import { signedUploadHeaders, type DownloadHeaders, type ListedObject, type ObjectInfo, type ObjectStore, type PresignPutInput } from '../object-store.js';
import { SigV4Signer } from '../sigv4.js';

/** Where the store is and how to reach it: the S3 part of the config, less the start-up switches. */
export type S3StoreOptions = Omit<S3Config, 'createBucket' | 'applyCors' | 'applyLifecycle'>;

/**
 * Client settings every S3 store of Keyframe uses. Checksums only where the
 * operation requires one: with the SDK's default (WHEN_SUPPORTED) a presigned
 * PUT carries `x-amz-checksum-crc32` of an *empty* body plus
 * `x-amz-sdk-checksum-algorithm`, and AWS S3, MinIO and R2 then refuse the real
 * upload, whose bytes do not match that checksum.
 */
export function s3ClientConfig(options: S3StoreOptions): S3ClientConfig {
  return {
    region: options.region,
    ...(options.endpoint === null ? {} : { endpoint: options.endpoint }),
    forcePathStyle: options.forcePathStyle,
    credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
}

/**
 * An ObjectStore on any S3-compatible service. Clients upload straight to the
 * service with presigned URLs; this class only signs, inspects, reads the first
 * bytes of, writes and deletes objects, the last four through the AWS SDK v3.
 *
 * URLs are signed by Keyframe's own SigV4 signer (checked against the SDK's in
 * the tests): the SDK presigner costs about 50 times as much per URL, and its
 * defaults sign neither `content-type` (a client could PUT text/html to a key
 * handed out for image/png) nor leave out a checksum of an empty body (which
 * AWS S3, MinIO and R2 hold the real upload to). Here the URL binds the key,
 * `content-type` and, when the client declared one, `content-length`.
 *
 * S3 cannot hold `maxBytes` on a presigned PUT (that needs a POST policy), so
 * here the limit is held by verification after the upload; an exact
 * `contentLength`, when given, is signed and so enforced by the service itself.
 */
export class S3Store implements ObjectStore {
  readonly kind = 's3' as const;
  readonly bucket: string;
  /** The SDK client, shared with the bucket bootstrap. */
  readonly client: S3Client;

  private readonly signer: SigV4Signer;
  private readonly address: ObjectAddress;

  constructor(options: S3StoreOptions) {
    this.bucket = options.bucket;
    this.client = new S3Client(s3ClientConfig(options));
    this.signer = new SigV4Signer({
      accessKeyId: options.accessKeyId,
      secretAccessKey: options.secretAccessKey,
      region: options.region,
      service: 's3',
    });
    this.address = objectAddress(options);
  }

  async presignPut(input: PresignPutInput): Promise<string> {
    return this.signer.presign({
      method: 'PUT',
      origin: this.address.origin,
      pathSegments: this.pathOf(input.key),
      headers: signedUploadHeaders(input),
      expiresInSeconds: input.expiresInSeconds,
    });
  }

  /**
   * With `response`, the URL carries signed `response-content-type` and
   * `response-content-disposition` parameters: the service answers with those
   * headers whatever type the uploader declared, and nobody can strip them
   * without breaking the signature.
   */
  async presignGet(key: string, expiresInSeconds: number, response?: DownloadHeaders): Promise<string> {
    return this.signer.presign({
      method: 'GET',
      origin: this.address.origin,
      pathSegments: this.pathOf(key),
      ...(response === undefined
        ? {}
        : { query: { 'response-content-type': response.contentType, 'response-content-disposition': response.contentDisposition } }),
      expiresInSeconds,
    });
  }

  /** Path segments of a key's URL: the bucket's prefix (empty when virtual-hosted), then the key's own. */
  private pathOf(key: string): string[] {
    return [...this.address.pathPrefix, ...key.split('/')];
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return {
        size: out.ContentLength ?? 0,
        contentType: out.ContentType ?? null,
        etag: out.ETag ?? null,
        // Presigned uploads carry no checksum, so S3 knows none; verification computes what it needs.
        sha256: null,
      };
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw err;
    }
  }

  async getRange(key: string, start: number, end: number): Promise<Buffer | null> {
    const wanted = Math.max(0, end - start + 1);
    if (wanted === 0) return (await this.head(key)) === null ? null : Buffer.alloc(0);
    let body: Readable;
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${start}-${end}` }));
      body = out.Body as Readable;
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) return null;
      // 416: the object exists but has no byte at `start` (it is shorter, or empty).
      if (status === 416) return Buffer.alloc(0);
      throw err;
    }
    return readAtMost(body, wanted);
  }

  /**
   * A GET with `If-Match: etag`: the service itself refuses (412) when the
   * object was replaced since, so the stream is exactly the verified bytes
   * even if a presigned PUT URL is replayed while we read.
   */
  async openVerified(key: string, etag: string): Promise<Readable | 'changed' | 'missing'> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, IfMatch: etag }));
      return out.Body as Readable;
    } catch (err) {
      const status = statusOf(err);
      if (status === 412) return 'changed';
      if (status === 404) return 'missing';
      throw err;
    }
  }

  async put(key: string, body: Readable, contentType: string): Promise<void> {
    // Upload streams bodies of unknown length (multipart past 5 MiB); a plain PutObject needs the length up front.
    await new Upload({ client: this.client, params: { Bucket: this.bucket, Key: key, Body: body, ContentType: contentType } }).done();
  }

  async delete(key: string): Promise<void> {
    // S3 answers 204 for a key that is already gone.
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  async *list(prefix: string): AsyncIterable<ListedObject> {
    for await (const page of paginateListObjectsV2({ client: this.client, pageSize: 1000 }, { Bucket: this.bucket, Prefix: prefix })) {
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined) continue;
        yield { key: object.Key, size: object.Size ?? 0, lastModified: object.LastModified ?? new Date(0) };
      }
    }
  }

  async createMultipart(input: { key: string; contentType: string }): Promise<{ uploadId: string }> {
    const out = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: input.key, ContentType: input.contentType }));
    if (!out.UploadId) throw new Error('CreateMultipartUpload answered no UploadId');
    return { uploadId: out.UploadId };
  }

  /** An UploadPart URL signed by Keyframe's signer, as `presignPut`: `partNumber` and `uploadId` in the query, `content-length` when given. */
  async presignPart(input: { key: string; uploadId: string; partNumber: number; contentLength: number | null; expiresInSeconds: number }): Promise<string> {
    checkPartInput(input);
    const length = input.contentLength;
    return this.signer.presign({
      method: 'PUT',
      origin: this.address.origin,
      pathSegments: this.pathOf(input.key),
      query: { partNumber: String(input.partNumber), uploadId: input.uploadId },
      headers: length === null ? {} : { 'content-length': String(length) },
      expiresInSeconds: input.expiresInSeconds,
    });
  }

  async listParts(key: string, uploadId: string): Promise<UploadedPart[] | 'missing'> {
    const parts: UploadedPart[] = [];
    let marker: string | undefined;
    try {
      // At most 10 000 parts, 1000 a page; the bound only guards against a service that never stops truncating.
      for (let page = 0; page <= MULTIPART_LIMITS.maxParts / 1000; page++) {
        const out = await this.client.send(
          new ListPartsCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, ...(marker === undefined ? {} : { PartNumberMarker: marker }) }),
        );
        for (const p of out.Parts ?? []) parts.push({ partNumber: p.PartNumber ?? 0, size: p.Size ?? 0, etag: p.ETag ?? '' });
        if (!out.IsTruncated || out.NextPartNumberMarker === undefined || out.NextPartNumberMarker === marker) break;
        marker = out.NextPartNumberMarker;
      }
    } catch (err) {
      if (multipartCodeOf(err) === 'NoSuchUpload' || statusOf(err) === 404) return 'missing';
      throw err;
    }
    return parts.sort((a, b) => a.partNumber - b.partNumber);
  }

  /**
   * CompleteMultipartUpload, then a HEAD for the object's info. The order of
   * the list is checked here first, so that every S3-compatible service
   * refuses an unordered list the same way (InvalidPartOrder).
   */
  async completeMultipart(key: string, uploadId: string, parts: { partNumber: number; etag: string }[]): Promise<ObjectInfo> {
    for (let i = 1; i < parts.length; i++) {
      if (!(parts[i]!.partNumber > parts[i - 1]!.partNumber)) {
        throw new MultipartError('InvalidPartOrder', 'The list of parts was not in ascending order. The parts list must be specified in order by part number.');
      }
    }
    if (parts.length === 0) throw new MultipartError('InvalidPart', 'The part list is empty');
    try {
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: quoted(p.etag) })) },
        }),
      );
    } catch (err) {
      const code = multipartCodeOf(err);
      if (code !== null) throw new MultipartError(code, (err as Error).message || code);
      // RGW answers a completion of an unknown (aborted, completed) upload with 500 InternalError
      // "This multipart completion is already in progress": ask whether the upload is there at all.
      if ((await this.listParts(key, uploadId).catch(() => null)) === 'missing') {
        throw new MultipartError('NoSuchUpload', 'The specified upload does not exist');
      }
      throw err;
    }
    const info = await this.head(key);
    if (info === null) throw new Error(`completed multipart upload of ${key} but the object is not there`);
    return info;
  }

  async abortMultipart(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }));
    } catch (err) {
      if (multipartCodeOf(err) === 'NoSuchUpload' || statusOf(err) === 404) return;
      throw err;
    }
  }
}

/** Where a presigned URL points: the origin, then these path segments, then the key's. */
interface ObjectAddress {
  origin: string;
  pathPrefix: string[];
}

/** Bucket names that can be a DNS label under TLS (no dots), as the SDK requires for virtual-hosted style. */
const VIRTUAL_HOSTABLE_BUCKET = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;

/**
 * The URL layout the SDK itself uses for these options: path style
 * (`endpoint/bucket/key`) when forced, when the bucket name cannot be a host
 * label or when the endpoint is an IP address, else virtual-hosted
 * (`bucket.endpoint/key`); AWS's regional endpoint when none is configured.
 * A path on the endpoint is kept in front.
 */
export function objectAddress(options: Pick<S3StoreOptions, 'endpoint' | 'region' | 'bucket' | 'forcePathStyle'>): ObjectAddress {
  const endpoint = new URL(options.endpoint ?? `https://s3.${options.region}.amazonaws.com`);
  const basePath = endpoint.pathname.split('/').filter((segment) => segment !== '');
  const host = endpoint.hostname.replace(/^\[|\]$/g, '');
  if (options.forcePathStyle || !VIRTUAL_HOSTABLE_BUCKET.test(options.bucket) || isIP(host) !== 0) {
    return { origin: endpoint.origin, pathPrefix: [...basePath, options.bucket] };
  }
  endpoint.hostname = `${options.bucket}.${endpoint.hostname}`;
  return { origin: endpoint.origin, pathPrefix: basePath };
}

const MULTIPART_CODES: readonly MultipartErrorCode[] = ['InvalidPart', 'InvalidPartOrder', 'EntityTooSmall', 'NoSuchUpload'];

/** S3's error code of an SDK error, when it is one of the multipart refusals. */
function multipartCodeOf(err: unknown): MultipartErrorCode | null {
  const name = (err as { name?: string; Code?: string } | null)?.name;
  const code = (err as { Code?: string } | null)?.Code;
  return MULTIPART_CODES.find((c) => c === name || c === code) ?? null;
}

/** ETags go to S3 in quotes, as ListParts and UploadPart give them. */
const quoted = (etag: string) => (etag.startsWith('"') ? etag : `"${etag}"`);

/** HTTP status of an SDK error, when it has one. */
export function statusOf(err: unknown): number | undefined {
  if (err instanceof S3ServiceException) return err.$metadata.httpStatusCode;
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

/**
 * The first `limit` bytes of a body, then the connection is dropped: a service
 * that ignored the Range header still does not send us the whole object.
 */
async function readAtMost(body: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
      chunks.push(buffer);
      total += buffer.length;
      if (total >= limit) break;
    }
  } finally {
    body.destroy();
  }
  return Buffer.concat(chunks).subarray(0, limit);
}
