import { randomBytes } from 'node:crypto';
import { DeleteBucketCommand, DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { startTestServer, type TestServer } from './server.js';

/**
 * The S3 service the S3 tests run against: Ceph RGW as scripts/ceph-rgw.sh
 * starts it, unless S3_* variables name another S3-compatible endpoint.
 */
export interface RgwSettings {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  forcePathStyle: string;
  /** Whether anything answered HTTP at the endpoint. */
  reachable: boolean;
}

export const RGW_START_COMMAND = 'bash scripts/ceph-rgw.sh install && bash scripts/ceph-rgw.sh up';

/**
 * Reads the S3 settings (defaults: the script's RGW) and probes the endpoint
 * once, within 3 s. Locally an unreachable service makes the S3 tests skip,
 * loudly; under CI=true they must fail instead (see `assertRgwReachable`).
 */
export async function rgwForTests(suite: string, env: NodeJS.ProcessEnv = process.env): Promise<RgwSettings & { skip: boolean }> {
  const settings: RgwSettings = {
    endpoint: env.S3_ENDPOINT || 'http://127.0.0.1:7480',
    region: env.S3_REGION || 'us-east-1',
    accessKeyId: env.S3_ACCESS_KEY_ID || 'keyframeaccesskey',
    secretAccessKey: env.S3_SECRET_ACCESS_KEY || 'keyframesecretkey0123456789',
    forcePathStyle: env.S3_FORCE_PATH_STYLE || 'true',
    reachable: await answersHttp(env.S3_ENDPOINT || 'http://127.0.0.1:7480'),
  };
  const skip = !settings.reachable && env.CI !== 'true';
  if (skip) {
    console.warn(
      `\n!!! ${suite}: S3 TESTS SKIPPED: nothing answers at ${settings.endpoint}.\n` +
        `!!! Start Ceph RGW with: ${RGW_START_COMMAND}\n` +
        `!!! (under CI=true these tests fail instead of skipping)\n`,
    );
  }
  return { ...settings, skip };
}

/** Throws, naming the command that starts RGW, when the service was not reachable (the CI=true case). */
export function assertRgwReachable(settings: RgwSettings): void {
  if (!settings.reachable) {
    throw new Error(`S3 service unreachable at ${settings.endpoint} (CI=true: S3 tests must run). Start it with: ${RGW_START_COMMAND}`);
  }
}

async function answersHttp(endpoint: string): Promise<boolean> {
  try {
    const res = await fetch(endpoint, { signal: AbortSignal.timeout(3000) });
    await res.arrayBuffer();
    return true;
  } catch {
    return false;
  }
}

/** A bucket name no other run uses (S3 bucket rules: 3-63 lower-case letters, digits, dashes). */
export function uniqueBucketName(purpose: string): string {
  return `kf-${purpose}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/** Server env for an S3-backed Keyframe on `bucket`, created at start-up. */
export function s3ServerEnv(settings: RgwSettings, bucket: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    KEYFRAME_STORAGE: 's3',
    S3_ENDPOINT: settings.endpoint,
    S3_REGION: settings.region,
    S3_ACCESS_KEY_ID: settings.accessKeyId,
    S3_SECRET_ACCESS_KEY: settings.secretAccessKey,
    S3_FORCE_PATH_STYLE: settings.forcePathStyle,
    S3_BUCKET: bucket,
    S3_CREATE_BUCKET: 'true',
    ...extra,
  };
}

/** A raw SDK client on the test service, for set-up and clean-up that the store does not do. */
export function rawS3Client(settings: RgwSettings): S3Client {
  return new S3Client({
    endpoint: settings.endpoint,
    region: settings.region,
    forcePathStyle: settings.forcePathStyle !== 'false',
    credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
}

/** Empties and removes a test bucket (at most 10 pages of 1000 objects: test buckets are small). */
export async function removeBucket(settings: RgwSettings, bucket: string): Promise<void> {
  const client = rawS3Client(settings);
  try {
    for (let page = 0; page < 10; page++) {
      const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
      const keys = (listed.Contents ?? []).map((o) => ({ Key: o.Key! }));
      if (keys.length === 0) break;
      await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
    }
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
}

/**
 * A test server on the disk store or, for `s3`, on RGW with a bucket of its
 * own (made at start, removed with its objects by `stop`): the one set-up of
 * the suites that run on both stores.
 */
export async function startServerOn(storeKind: 'disk' | 's3', settings: RgwSettings, purpose: string, env: Record<string, string> = {}): Promise<TestServer> {
  let bucket: string | null = null;
  let storeEnv: Record<string, string> = {};
  if (storeKind === 's3') {
    assertRgwReachable(settings);
    bucket = uniqueBucketName(purpose);
    storeEnv = s3ServerEnv(settings, bucket);
  }
  const server = await startTestServer({ ...storeEnv, ...env });
  return {
    ...server,
    async stop() {
      await server.stop();
      if (bucket !== null) await removeBucket(settings, bucket);
    },
  };
}
