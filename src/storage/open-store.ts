import type { Config } from '../config.js';
import { downloadHeaders } from '../domain/media-types.js';
import { USER_ID_PATTERN, parseUploadKey } from '../domain/object-keys.js';
import { signingSecret } from '../signing-secret.js';
import { DiskStore } from './disk/disk-store.js';
import type { ObjectStore } from './object-store.js';
import { MULTIPART_LIFETIME_SECONDS } from '../domain/multipart-uploads.js';
import { bootstrapBucket, lifecycleDays } from './s3/bucket-bootstrap.js';
import { S3Store } from './s3/s3-store.js';

/**
 * The object store the config names, ready to use. For S3 that means the
 * bucket is reachable (created when allowed) and carries the CORS rule when
 * asked; otherwise this throws a BucketUnavailableError and start-up stops.
 * `bootstrap: false` (an admin command that must change nothing but what it
 * says, such as `keyframe gc --dry-run`) leaves the bucket's settings alone.
 */
export async function openStore(config: Config, publicUrl: string, options: { bootstrap?: boolean } = {}): Promise<ObjectStore> {
  if (config.storage === 's3') {
    if (config.s3 === null) throw new Error('KEYFRAME_STORAGE=s3 without S3 settings');
    const store = new S3Store(config.s3);
    if (options.bootstrap === false) return store;
    try {
      await bootstrapBucket(store.client, {
        bucket: config.s3.bucket,
        endpoint: config.s3.endpoint,
        createBucket: config.s3.createBucket,
        corsOrigins: config.s3.applyCors ? config.corsOrigins : null,
        abortIncompleteMultipartDays: config.s3.applyLifecycle ? lifecycleDays(MULTIPART_LIFETIME_SECONDS) : null,
      });
    } catch (err) {
      store.client.destroy();
      throw err;
    }
    return store;
  }
  const store = new DiskStore({
    root: config.dataDir,
    publicUrl,
    signingSecret: signingSecret(config),
    ownerOf: ownerOfKey,
    maxUploadsPerOwner: config.limits.concurrentUploadsPerUser,
    maxUploads: config.limits.concurrentUploads,
    downloadHeaders: (contentType) => downloadHeaders(contentType ?? ''),
  });
  await store.init();
  return store;
}

/**
 * The user a disk-store key belongs to, for the per-user upload cap: the owner
 * of an upload key, or of a generation's video (`users/<id>/generations/...`);
 * null for anything else.
 */
function ownerOfKey(key: string): string | null {
  const upload = parseUploadKey(key);
  if (upload) return upload.userId;
  const [root, userId, area] = key.split('/');
  if (root === 'users' && userId !== undefined && USER_ID_PATTERN.test(userId) && area === 'generations') return userId;
  return null;
}
