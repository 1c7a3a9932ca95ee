import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { describe, expect, it } from 'vitest';
import { S3Store, type S3StoreOptions } from '../../src/storage/s3/s3-store.js';

// The shape of the URLs the S3 store signs. Signing is local, so no service is
// needed; the behaviour suite shows RGW acting on the same URLs. Each trap is
// shown twice: the SDK's defaults fall into it, the store does not.

const options: S3StoreOptions = {
  endpoint: 'http://127.0.0.1:7480',
  region: 'us-east-1',
  bucket: 'shape-test',
  accessKeyId: 'shape-test-access-key',
  secretAccessKey: 'shape-test-secret-key',
  forcePathStyle: true,
};
const key = 'users/u1/user-uploads/batch_x/file_y.png';

/** What a plain `getSignedUrl` with a default client gives for the same upload. */
async function presignWithSdkDefaults(contentLength?: number): Promise<URL> {
  const client = new S3Client({
    region: options.region,
    endpoint: options.endpoint!,
    forcePathStyle: true,
    credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
  });
  const command = new PutObjectCommand({
    Bucket: options.bucket,
    Key: key,
    ContentType: 'image/png',
    ...(contentLength === undefined ? {} : { ContentLength: contentLength }),
  });
  return new URL(await getSignedUrl(client, command, { expiresIn: 900 }));
}

async function presignWithStore(contentLength: number | null): Promise<URL> {
  const store = new S3Store(options);
  return new URL(await store.presignPut({ key, contentType: 'image/png', maxBytes: 20 * 1024 * 1024, contentLength, expiresInSeconds: 900 }));
}

const signedHeaders = (url: URL) => (url.searchParams.get('X-Amz-SignedHeaders') ?? '').split(';');
const checksumParams = (url: URL) =>
  [...url.searchParams.keys()].filter((name) => /^x-amz-(checksum-|sdk-checksum-algorithm$)/i.test(name));

describe('presigned upload URL of the S3 store', () => {
  it('signs content-type (the SDK default signs only host, so any type would be accepted)', async () => {
    const sdkDefault = await presignWithSdkDefaults();
    expect(signedHeaders(sdkDefault)).not.toContain('content-type');

    const url = await presignWithStore(null);
    expect(signedHeaders(url)).toContain('content-type');
    expect(signedHeaders(url)).toContain('host');
    expect(signedHeaders(url)).not.toContain('content-length');
  });

  it('signs content-length when the client declared one', async () => {
    const url = await presignWithStore(1234);
    expect(signedHeaders(url)).toEqual(expect.arrayContaining(['content-length', 'content-type', 'host']));
  });

  it('carries no checksum parameters (the SDK default adds the checksum of an empty body)', async () => {
    const sdkDefault = await presignWithSdkDefaults();
    expect(checksumParams(sdkDefault)).not.toEqual([]);
    expect(sdkDefault.searchParams.get('x-amz-sdk-checksum-algorithm')).not.toBeNull();

    for (const url of [await presignWithStore(null), await presignWithStore(1234)]) {
      expect(checksumParams(url)).toEqual([]);
      expect(signedHeaders(url).filter((h) => h.startsWith('x-amz-checksum'))).toEqual([]);
    }
  });

  it('is a path-style SigV4 URL for the key, with the requested lifetime and no secret in it', async () => {
    const url = await presignWithStore(null);
    expect(url.origin).toBe('http://127.0.0.1:7480');
    expect(url.pathname).toBe(`/${options.bucket}/${key}`);
    expect(url.searchParams.get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');
    expect(url.searchParams.get('X-Amz-Expires')).toBe('900');
    expect(url.searchParams.get('X-Amz-Credential')).toMatch(/^shape-test-access-key\/\d{8}\/us-east-1\/s3\/aws4_request$/);
    expect(url.href).not.toContain(options.secretAccessKey);
  });
});
