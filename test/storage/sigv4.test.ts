import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { SigV4Signer, type IncomingSignedRequest } from '../../src/storage/sigv4.js';
import { NodeSha256 } from '../helpers/node-sha256.js';

const credentials = { accessKeyId: 'keyframe', secretAccessKey: 'test-secret-test-secret-test-secret!!' };
const region = 'us-east-1';
const service = 's3';
const origin = 'http://127.0.0.1:3000';
const signer = new SigV4Signer({ ...credentials, region, service });
const sdk = new SignatureV4({ credentials, region, service, sha256: NodeSha256 as never, uriEscapePath: true });
const signedAt = new Date('2026-02-26T12:34:56.000Z');

/** Keys as S3 clients send them, several needing percent-encoding. */
const keys = [
  'users/u1/user-uploads/batch_abc/file_def.png',
  'users/u_-1/user-uploads/my file (1).png',
  "users/u1/a+b=c&d;e'*!~$,@.png",
  'users/u1/ünïcödé/日本語.mp4',
  'users/u1/100%25 real%.wav',
];

async function sdkPresign(key: string, now: Date, extraQuery: Record<string, string> = {}) {
  return sdk.presign(
    {
      method: 'PUT',
      protocol: 'http:',
      hostname: '127.0.0.1',
      port: 3000,
      // Decoded: with uriEscapePath the SDK escapes the path itself, independently of our encoder.
      path: `/keyframe/${key}`,
      query: { 'x-keyframe-max-bytes': '20971520', ...extraQuery },
      headers: { host: '127.0.0.1:3000', 'content-type': 'image/png', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
    },
    {
      signingDate: now,
      expiresIn: 900,
      // As @aws-sdk/s3-request-presigner does: the payload hash is read from this header, not signed or hoisted.
      unsignableHeaders: new Set(['x-amz-content-sha256']),
      unhoistableHeaders: new Set(['x-amz-content-sha256']),
    },
  );
}

function ourPresign(key: string, now: Date, using: SigV4Signer = signer): URL {
  return new URL(
    using.presign({
      method: 'PUT',
      origin,
      pathSegments: ['keyframe', ...key.split('/')],
      query: { 'x-keyframe-max-bytes': '20971520' },
      headers: { 'content-type': 'image/png' },
      expiresInSeconds: 900,
      now,
    }),
  );
}

/** What the disk store hands to verify() for a URL as it arrives. */
function incoming(url: URL, overrides: Partial<IncomingSignedRequest> = {}): IncomingSignedRequest {
  return {
    method: 'PUT',
    host: '127.0.0.1:3000',
    pathSegments: url.pathname.split('/').slice(1).map(decodeURIComponent),
    rawQuery: url.search.slice(1),
    headers: { 'content-type': 'image/png' },
    now: new Date(signedAt.getTime() + 60_000),
    ...overrides,
  };
}

const rawQueryOf = (query: Record<string, string | string[] | null | undefined>) =>
  Object.entries(query)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join('&');

describe('SigV4Signer against the AWS SDK signer', () => {
  it.each(keys)('signs %s exactly as the SDK does', async (key) => {
    const ours = ourPresign(key, signedAt);
    const theirs = await sdkPresign(key, signedAt);
    expect(ours.searchParams.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
    expect(ours.searchParams.get('X-Amz-Signature')).toBe(theirs.query!['X-Amz-Signature']);
    for (const name of ['X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders']) {
      expect(ours.searchParams.get(name), name).toBe(theirs.query![name]);
    }
  });

  it('signs GET download URLs (no extra headers) as the SDK does', async () => {
    const key = 'users/u1/generations/gen 1.mp4';
    const ours = new URL(
      signer.presign({ method: 'GET', origin, pathSegments: ['keyframe', ...key.split('/')], expiresInSeconds: 3600, now: signedAt }),
    );
    const theirs = await sdk.presign(
      {
        method: 'GET',
        protocol: 'http:',
        hostname: '127.0.0.1',
        port: 3000,
        path: `/keyframe/${key}`,
        query: {},
        headers: { host: '127.0.0.1:3000', 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
      },
      {
        signingDate: signedAt,
        expiresIn: 3600,
        unsignableHeaders: new Set(['x-amz-content-sha256']),
        unhoistableHeaders: new Set(['x-amz-content-sha256']),
      },
    );
    expect(ours.searchParams.get('X-Amz-Signature')).toBe(theirs.query!['X-Amz-Signature']);
  });

  it.each(keys)('verify() accepts our URL and the SDK URL for %s', async (key) => {
    expect(signer.verify(incoming(ourPresign(key, signedAt))).ok).toBe(true);
    const theirs = await sdkPresign(key, signedAt);
    const result = signer.verify(incoming(ourPresign(key, signedAt), { rawQuery: rawQueryOf(theirs.query!) }));
    expect(result.ok).toBe(true);
  });

  it('verify() accepts SDK URLs carrying query parameters we never sign ourselves', async () => {
    const key = keys[0]!;
    const theirs = await sdkPresign(key, signedAt, { 'x-id': 'PutObject', 'response-content-type': 'image/png' });
    expect(signer.verify(incoming(ourPresign(key, signedAt), { rawQuery: rawQueryOf(theirs.query!) })).ok).toBe(true);
  });
});

describe('SigV4Signer.verify refusals', () => {
  const key = keys[1]!;
  const url = () => ourPresign(key, signedAt);

  it('refuses a changed signature', () => {
    const u = url();
    const sig = u.searchParams.get('X-Amz-Signature')!;
    u.searchParams.set('X-Amz-Signature', (sig[0] === '0' ? '1' : '0') + sig.slice(1));
    expect(signer.verify(incoming(u))).toEqual({ ok: false, reason: 'signature' });
  });

  it('refuses a signature made with another secret', () => {
    const other = new SigV4Signer({ ...credentials, secretAccessKey: 'another-secret-another-secret-xx', region, service });
    const u = ourPresign(key, signedAt, other);
    expect(signer.verify(incoming(u))).toEqual({ ok: false, reason: 'signature' });
  });

  it('refuses a changed path, method, host or signed header', () => {
    const u = url();
    const segments = incoming(u).pathSegments;
    expect(signer.verify(incoming(u, { pathSegments: [...segments.slice(0, -1), 'other.png'] })).ok).toBe(false);
    expect(signer.verify(incoming(u, { pathSegments: ['keyframe', 'users', 'u2', ...segments.slice(3)] })).ok).toBe(false);
    expect(signer.verify(incoming(u, { method: 'GET' })).ok).toBe(false);
    expect(signer.verify(incoming(u, { host: '127.0.0.1:3001' })).ok).toBe(false);
    expect(signer.verify(incoming(u, { headers: { 'content-type': 'image/jpeg' } })).ok).toBe(false);
    expect(signer.verify(incoming(u, { headers: {} })).ok).toBe(false);
    expect(signer.verify(incoming(u, { headers: { 'content-type': ['image/png', 'image/png'] } })).ok).toBe(false);
  });

  it('refuses any changed, dropped or duplicated parameter', () => {
    const names = [...url().searchParams.keys()];
    expect(names).toHaveLength(7);
    for (const name of names) {
      const changed = url();
      changed.searchParams.set(name, changed.searchParams.get(name)! + '0');
      expect(signer.verify(incoming(changed)).ok, `changed ${name}`).toBe(false);

      const dropped = url();
      dropped.searchParams.delete(name);
      expect(signer.verify(incoming(dropped)).ok, `dropped ${name}`).toBe(false);

      const duplicated = url();
      duplicated.searchParams.append(name, duplicated.searchParams.get(name)!);
      expect(signer.verify(incoming(duplicated)), `duplicated ${name}`).toEqual({ ok: false, reason: 'malformed' });
    }
    const added = url();
    added.searchParams.append('x-extra', '1');
    expect(signer.verify(incoming(added)).ok).toBe(false);
  });

  it('refuses an expired URL, only after the signature is known good', () => {
    const u = url();
    const justBefore = new Date(signedAt.getTime() + 900_000);
    const justAfter = new Date(signedAt.getTime() + 901_000);
    expect(signer.verify(incoming(u, { now: justBefore })).ok).toBe(true);
    expect(signer.verify(incoming(u, { now: justAfter }))).toEqual({ ok: false, reason: 'expired' });
    const tampered = url();
    tampered.searchParams.set('X-Amz-Expires', '604800');
    expect(signer.verify(incoming(tampered, { now: justAfter }))).toEqual({ ok: false, reason: 'signature' });
  });

  it('refuses a URL dated beyond the allowed clock skew, accepts one within it', () => {
    const now = new Date(signedAt.getTime() - 16 * 60_000);
    expect(signer.verify(incoming(url(), { now }))).toEqual({ ok: false, reason: 'expired' });
    const withinSkew = new Date(signedAt.getTime() - 5 * 60_000);
    expect(signer.verify(incoming(url(), { now: withinSkew })).ok).toBe(true);
  });

  it('refuses malformed query strings', () => {
    expect(signer.verify(incoming(url(), { rawQuery: '' })).ok).toBe(false);
    expect(signer.verify(incoming(url(), { rawQuery: url().search.slice(1) + '&bad=%E0%A4%A' })).ok).toBe(false);
    expect(signer.verify(incoming(url(), { rawQuery: 'X-Amz-Signature=zz' })).ok).toBe(false);
  });
});
