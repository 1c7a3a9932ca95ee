import { CreateBucketCommand, HeadBucketCommand, PutBucketCorsCommand, PutBucketLifecycleConfigurationCommand, type S3Client } from '@aws-sdk/client-s3';
import { statusOf } from './s3-store.js';

/** What start-up does to the bucket before Keyframe serves anything. */
export interface BucketBootstrapOptions {
  bucket: string;
  /** Shown in errors so an operator knows which service was asked; null means AWS S3. */
  endpoint: string | null;
  /** Create the bucket when it does not exist (otherwise a missing bucket stops start-up). */
  createBucket: boolean;
  /** Browser origins to allow on the bucket; null leaves the bucket's CORS rules alone. */
  corsOrigins: string[] | null;
  /**
   * Days after which the bucket aborts an incomplete multipart upload (lifecycle rule
   * `AbortIncompleteMultipartUpload`, `S3_APPLY_LIFECYCLE`); null leaves the bucket's lifecycle alone.
   * Only a backstop: the sweep aborts expired uploads (and closes their records) long before.
   */
  abortIncompleteMultipartDays?: number | null;
}

/** The lifecycle rule's days for a lifetime in seconds: whole days, rounded up, at least 1. */
export const lifecycleDays = (lifetimeSeconds: number) => Math.max(1, Math.ceil(lifetimeSeconds / 86_400));

/** The id of the one lifecycle rule Keyframe applies. */
export const LIFECYCLE_RULE_ID = 'keyframe-abort-incomplete-multipart';

/**
 * Start-up could not use the bucket. The message names the endpoint and the
 * bucket and says what to do; it never carries a credential.
 */
export class BucketUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BucketUnavailableError';
  }
}

/**
 * Makes sure the bucket exists and is reachable with these credentials, and
 * applies the CORS rule browsers need to PUT to presigned URLs from another origin.
 */
export async function bootstrapBucket(client: S3Client, options: BucketBootstrapOptions): Promise<void> {
  const where = `S3 bucket "${options.bucket}" at ${options.endpoint ?? 'AWS S3'}`;
  const status = await headBucket(client, options.bucket, where);
  if (status === 404) {
    if (!options.createBucket) {
      throw new BucketUnavailableError(`${where} does not exist; create it, or set S3_CREATE_BUCKET=true to let Keyframe create it`);
    }
    try {
      await client.send(new CreateBucketCommand({ Bucket: options.bucket }));
    } catch (err) {
      // Another instance starting at the same moment may have created it first.
      if (!['BucketAlreadyOwnedByYou', 'BucketAlreadyExists'].includes((err as Error).name)) {
        throw new BucketUnavailableError(`${where} could not be created: ${describe(err)}`, { cause: err });
      }
    }
  }
  if (options.corsOrigins !== null) await applyCors(client, options.bucket, options.corsOrigins, where);
  const days = options.abortIncompleteMultipartDays ?? null;
  if (days !== null) await applyLifecycle(client, options.bucket, days, where);
}

/**
 * One rule over the whole bucket: incomplete multipart uploads are aborted `days` after
 * they were started. It replaces the bucket's lifecycle configuration (as S3_APPLY_CORS
 * replaces its CORS rules); RGW and AWS S3 support it.
 */
async function applyLifecycle(client: S3Client, bucket: string, days: number, where: string): Promise<void> {
  try {
    await client.send(
      new PutBucketLifecycleConfigurationCommand({
        Bucket: bucket,
        LifecycleConfiguration: {
          Rules: [{ ID: LIFECYCLE_RULE_ID, Status: 'Enabled', Filter: { Prefix: '' }, AbortIncompleteMultipartUpload: { DaysAfterInitiation: days } }],
        },
      }),
    );
  } catch (err) {
    throw new BucketUnavailableError(`${where}: could not apply the lifecycle rule (S3_APPLY_LIFECYCLE): ${describe(err)}`, { cause: err });
  }
}

/** 200 when the bucket is there, 404 when it is not; anything else stops start-up. */
async function headBucket(client: S3Client, bucket: string, where: string): Promise<200 | 404> {
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket }));
    return 200;
  } catch (err) {
    const status = statusOf(err);
    if (status === 404) return 404;
    if (status === 403) {
      throw new BucketUnavailableError(`${where}: access denied; check S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY`, { cause: err });
    }
    throw new BucketUnavailableError(`${where} is not reachable: ${describe(err)}`, { cause: err });
  }
}

/**
 * One rule: the configured origins may PUT (with a Content-Type, as presigned
 * uploads and parts must), GET and HEAD (with a Range), and read the ETag of
 * what they uploaded (multipart clients such as Uppy need each part's).
 */
async function applyCors(client: S3Client, bucket: string, origins: string[], where: string): Promise<void> {
  if (origins.length === 0) {
    throw new BucketUnavailableError(`S3_APPLY_CORS=true needs the browser origins in KEYFRAME_CORS_ORIGINS (${where})`);
  }
  try {
    await client.send(
      new PutBucketCorsCommand({
        Bucket: bucket,
        CORSConfiguration: {
          CORSRules: [
            {
              AllowedOrigins: origins,
              AllowedMethods: ['PUT', 'GET', 'HEAD'],
              // Content-Length is signed into part and upload URLs when the size is known; Range for seeking.
              AllowedHeaders: ['content-type', 'content-length', 'range'],
              // S3's request ids too, so a page can report a refused part the way the store's support asks for.
              ExposeHeaders: ['ETag', 'Content-Range', 'Accept-Ranges', 'Content-Length', 'x-amz-request-id', 'x-amz-id-2'],
              MaxAgeSeconds: 600,
            },
          ],
        },
      }),
    );
  } catch (err) {
    throw new BucketUnavailableError(`${where}: could not apply the CORS rule: ${describe(err)}`, { cause: err });
  }
}

/** A short, credential-free account of an SDK or network error. */
function describe(err: unknown): string {
  const e = err as Error & { code?: string; cause?: { code?: string } };
  const status = statusOf(err);
  const code = e.code ?? e.cause?.code;
  return [e.name, status === undefined ? undefined : `HTTP ${status}`, code, e.message].filter(Boolean).join(', ');
}
