import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  S3Client,
  S3ServiceException,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { S3Config } from '../../config.js';
import { signedUploadHeaders, type DownloadHeaders, type ObjectInfo, type ObjectStore, type PresignPutInput } from '../object-store.js';
import { SigV4Signer } from '../sigv4.js';

/** Where the store is and how to reach it: the S3 part of the config, less the start-up switches. */
export type S3StoreOptions = Omit<S3Config, 'createBucket' | 'applyCors'>;

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
