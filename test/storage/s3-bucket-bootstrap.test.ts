import { freePort } from '../../src/free-port.js';
import { HeadBucketCommand } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import { startTestServer } from '../helpers/server.js';
import { assertRgwReachable, rawS3Client, removeBucket, rgwForTests, s3ServerEnv, uniqueBucketName } from '../helpers/rgw.js';

// Start-up with KEYFRAME_STORAGE=s3 checks the bucket before serving anything,
// and when it cannot be used says which endpoint and bucket, never a credential.

const rgw = await rgwForTests('S3 bucket bootstrap test');


const expectSafeMessage = (message: string) => {
  expect(message).not.toContain(rgw.secretAccessKey);
  expect(message).not.toContain('keyframesecretkey');
};

describe('S3 bucket bootstrap without a service', () => {
  it('fails start-up naming the endpoint and bucket when nothing answers', async () => {
    const endpoint = `http://127.0.0.1:${await freePort() /* released at once: nothing listens there */}`;
    const error = await startTestServer(s3ServerEnv({ ...rgw, endpoint }, 'kf-nowhere')).then(
      () => null,
      (err: Error) => err,
    );
    expect(error?.name).toBe('BucketUnavailableError');
    expect(error!.message).toContain(endpoint);
    expect(error!.message).toContain('"kf-nowhere"');
    expect(error!.message).toMatch(/not reachable/);
    expectSafeMessage(error!.message);
  });
});

describe.skipIf(rgw.skip)('S3 bucket bootstrap on RGW', () => {
  const created: string[] = [];
  afterAll(async () => {
    for (const bucket of created) await removeBucket(rgw, bucket);
  });

  it('refuses to start on a missing bucket unless S3_CREATE_BUCKET=true', async () => {
    assertRgwReachable(rgw);
    const bucket = uniqueBucketName('missing');
    const error = await startTestServer(s3ServerEnv(rgw, bucket, { S3_CREATE_BUCKET: 'false' })).then(
      () => null,
      (err: Error) => err,
    );
    expect(error?.name).toBe('BucketUnavailableError');
    expect(error!.message).toContain(rgw.endpoint);
    expect(error!.message).toContain(`"${bucket}"`);
    expect(error!.message).toContain('S3_CREATE_BUCKET=true');
    expectSafeMessage(error!.message);
  });

  it('creates the missing bucket with S3_CREATE_BUCKET=true, and starts on an existing one', async () => {
    assertRgwReachable(rgw);
    const bucket = uniqueBucketName('create');
    created.push(bucket);
    const first = await startTestServer(s3ServerEnv(rgw, bucket));
    await first.stop();
    const client = rawS3Client(rgw);
    try {
      await expect(client.send(new HeadBucketCommand({ Bucket: bucket }))).resolves.toBeDefined();
    } finally {
      client.destroy();
    }
    const second = await startTestServer(s3ServerEnv(rgw, bucket, { S3_CREATE_BUCKET: 'false' }));
    expect(second.store.kind).toBe('s3');
    await second.stop();
  });

  it('fails start-up on wrong credentials, without echoing them', async () => {
    assertRgwReachable(rgw);
    const error = await startTestServer(
      s3ServerEnv({ ...rgw, accessKeyId: 'nosuchaccesskey', secretAccessKey: 'nosuchsecret0123456789' }, uniqueBucketName('creds')),
    ).then(
      () => null,
      (err: Error) => err,
    );
    expect(error?.name).toBe('BucketUnavailableError');
    expect(error!.message).toContain(rgw.endpoint);
    expect(error!.message).not.toContain('nosuchsecret0123456789');
  });

  it('refuses S3_APPLY_CORS=true without browser origins to allow', async () => {
    assertRgwReachable(rgw);
    const bucket = uniqueBucketName('nocors');
    created.push(bucket);
    const error = await startTestServer(s3ServerEnv(rgw, bucket, { S3_APPLY_CORS: 'true' })).then(
      () => null,
      (err: Error) => err,
    );
    expect(error?.name).toBe('BucketUnavailableError');
    expect(error!.message).toContain('KEYFRAME_CORS_ORIGINS');
  });
});
