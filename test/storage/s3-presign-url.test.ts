import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { objectAddress, S3Store, type S3StoreOptions } from '../../src/storage/s3/s3-store.js';
import { NodeSha256 } from '../helpers/node-sha256.js';

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

/** The signature the AWS SDK's SigV4 signer computes for the request `url` describes, at the time `url` was signed. */
async function sdkSignatureOf(url: URL, method: string, headers: Record<string, string>): Promise<string | undefined> {
  const sdk = new SignatureV4({
    credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
    region: options.region,
    service: 's3',
    sha256: NodeSha256 as never,
    uriEscapePath: true,
  });
  const amzDate = url.searchParams.get('X-Amz-Date')!;
  const signingDate = new Date(amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));
  const signed = await sdk.presign(
    {
      method,
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port === '' ? {} : { port: Number(url.port) }),
      path: decodeURIComponent(url.pathname),
      query: {},
      headers: { ...headers, host: url.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
    },
    {
      signingDate,
      expiresIn: Number(url.searchParams.get('X-Amz-Expires')),
      unsignableHeaders: new Set(['x-amz-content-sha256']),
      unhoistableHeaders: new Set(['x-amz-content-sha256']),
    },
  );
  return signed.query?.['X-Amz-Signature'] as string | undefined;
}

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

describe('S3 store URLs signed with Keyframe\'s signer', () => {
  it('carry the signature the AWS SDK signer computes for the same upload', async () => {
    const store = new S3Store(options);
    for (const contentLength of [null, 1234]) {
      const url = new URL(await store.presignPut({ key: 'users/u1/my file (1).png', contentType: 'image/png', maxBytes: 1, contentLength, expiresInSeconds: 900 }));
      const headers: Record<string, string> = { 'content-type': 'image/png' };
      if (contentLength !== null) headers['content-length'] = String(contentLength);
      expect(url.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
      expect(url.searchParams.get('X-Amz-Signature')).toBe(await sdkSignatureOf(url, 'PUT', headers));
    }
    const download = new URL(await store.presignGet('users/u1/generations/gen_1.mp4', 3600));
    expect(download.searchParams.get('X-Amz-SignedHeaders')).toBe('host');
    expect(download.searchParams.get('X-Amz-Signature')).toBe(await sdkSignatureOf(download, 'GET', {}));
  });

  it('are path-style or virtual-hosted as the SDK would address the bucket', () => {
    const aws = { endpoint: null, region: 'eu-west-1', bucket: 'refs', forcePathStyle: false };
    expect(objectAddress(aws)).toEqual({ origin: 'https://refs.s3.eu-west-1.amazonaws.com', pathPrefix: [] });
    expect(objectAddress({ ...aws, forcePathStyle: true })).toEqual({ origin: 'https://s3.eu-west-1.amazonaws.com', pathPrefix: ['refs'] });
    // A dotted name cannot be a host label under TLS; an IP endpoint has no subdomains.
    expect(objectAddress({ ...aws, bucket: 'my.refs' })).toEqual({ origin: 'https://s3.eu-west-1.amazonaws.com', pathPrefix: ['my.refs'] });
    const minio = { ...aws, endpoint: 'http://127.0.0.1:9000', forcePathStyle: false };
    expect(objectAddress(minio)).toEqual({ origin: 'http://127.0.0.1:9000', pathPrefix: ['refs'] });
    expect(objectAddress({ ...minio, endpoint: 'https://storage.example.com/s3' })).toEqual({
      origin: 'https://refs.storage.example.com',
      pathPrefix: ['s3'],
    });
  });
});
