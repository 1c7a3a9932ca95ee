import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CreatedApiKey } from '../../src/domain/api-keys.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { assertRgwReachable, removeBucket, rgwForTests, s3ServerEnv, uniqueBucketName } from '../helpers/rgw.js';

// A browser on another origin uploads straight to S3 (Ceph RGW): the preflight
// must pass and the PUT's answer must carry the CORS headers, or the browser
// discards it. The rule comes from Keyframe's start-up (S3_APPLY_CORS=true).

const rgw = await rgwForTests('S3 CORS test');
const APP_ORIGIN = 'http://app.keyframe.test:5173';
const OTHER_ORIGIN = 'http://evil.keyframe.test';
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

describe.skipIf(rgw.skip)('browser-style upload to a presigned S3 URL from another origin', () => {
  let server: TestServer;
  let user: CreatedApiKey;
  const bucket = uniqueBucketName('cors');

  beforeAll(async () => {
    assertRgwReachable(rgw);
    server = await startTestServer(s3ServerEnv(rgw, bucket, { S3_APPLY_CORS: 'true', KEYFRAME_CORS_ORIGINS: APP_ORIGIN }));
    user = await server.createKey('browser-user');
  });

  afterAll(async () => {
    await server?.stop();
    if (rgw.reachable) await removeBucket(rgw, bucket);
  });

  async function presignPng(): Promise<{ s3_key: string; upload_url: string }> {
    const res = await server.api('POST', '/api/s3/presign-upload', { key: user.key, body: { kind: 'upload', contentType: 'image/png' } });
    expect(res.status).toBe(200);
    return res.body;
  }

  const preflight = (url: string, origin: string) =>
    fetch(url, {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': 'PUT', 'access-control-request-headers': 'content-type' },
      signal: AbortSignal.timeout(10_000),
    });

  it('passes the preflight for the configured origin, then accepts the PUT with CORS headers', async () => {
    const { s3_key, upload_url } = await presignPng();

    const pre = await preflight(upload_url, APP_ORIGIN);
    await pre.arrayBuffer();
    expect(pre.status).toBe(200);
    expect(pre.headers.get('access-control-allow-origin')).toBe(APP_ORIGIN);
    expect(pre.headers.get('access-control-allow-methods')?.toUpperCase()).toContain('PUT');
    expect(pre.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('content-type');

    const res = await fetch(upload_url, {
      method: 'PUT',
      headers: { origin: APP_ORIGIN, 'content-type': 'image/png' },
      body: new Uint8Array(PNG_SIGNATURE),
      signal: AbortSignal.timeout(10_000),
    });
    await res.arrayBuffer();
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(APP_ORIGIN);
    expect(res.headers.get('access-control-expose-headers')?.toLowerCase()).toContain('etag');
    expect(res.headers.get('etag')).toEqual(expect.any(String));
    // A page may seek: a ranged GET passes the preflight and can read Content-Range.
    const download = await server.store.presignGet(s3_key, 60);
    const ranged = await fetch(download, { method: 'OPTIONS', headers: { origin: APP_ORIGIN, 'access-control-request-method': 'GET', 'access-control-request-headers': 'range' } });
    await ranged.arrayBuffer();
    expect(ranged.status).toBe(200);
    expect(ranged.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('range');
    const part = await fetch(download, { headers: { origin: APP_ORIGIN, range: 'bytes=0-3' } });
    await part.arrayBuffer();
    expect(part.status).toBe(206);
    expect(part.headers.get('access-control-expose-headers')?.toLowerCase()).toContain('content-range');
    // The store's request id, which its error answers carry, is readable by the page.
    expect(part.headers.get('access-control-expose-headers')?.toLowerCase()).toContain('x-amz-request-id');
    expect(await server.store.head(s3_key)).toMatchObject({ size: PNG_SIGNATURE.length, contentType: 'image/png' });
  });

  it('does not allow an origin that is not configured', async () => {
    const { upload_url } = await presignPng();
    const pre = await preflight(upload_url, OTHER_ORIGIN);
    await pre.arrayBuffer();
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
    expect(pre.status).toBe(403);
  });
});
