import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * AWS Signature Version 4 in its query-string ("presigned URL") form, for the
 * embedded disk store: it signs upload and download URLs that look exactly like
 * S3's, and verifies them when they come back. Payloads are UNSIGNED-PAYLOAD,
 * as in every S3 presigned URL. The test suite checks it against the AWS SDK's
 * own signer. The per-day signing key is cached, so one signature costs two HMACs.
 */
const ALGORITHM = 'AWS4-HMAC-SHA256';
const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
const MAX_EXPIRES_SECONDS = 7 * 24 * 3600;
/** How far in the future an X-Amz-Date may be (clock skew between signer and verifier). */
const MAX_CLOCK_SKEW_MS = 15 * 60 * 1000;

export interface SigV4Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  service: string;
}

export interface PresignRequest {
  method: string;
  /** Origin only, e.g. http://127.0.0.1:3000 */
  origin: string;
  /** Decoded path segments, e.g. ['keyframe', 'users', 'u1', ...] */
  pathSegments: string[];
  /** Extra query parameters to sign (they are part of the URL). */
  query?: Record<string, string>;
  /** Headers the client must send with exactly these values (lower-case names); host is always signed. */
  headers?: Record<string, string>;
  expiresInSeconds: number;
  now?: Date;
}

export interface IncomingSignedRequest {
  method: string;
  /** The host the URL was signed for (the configured public host, not the Host header). */
  host: string;
  /** Decoded path segments. */
  pathSegments: string[];
  /** Raw query string, without the leading '?'. */
  rawQuery: string;
  headers: Record<string, string | string[] | undefined>;
  now?: Date;
}

export type VerifyResult =
  | { ok: true; params: Map<string, string>; signedHeaders: string[] }
  | { ok: false; reason: 'malformed' | 'expired' | 'signature' };

/** RFC 3986 encoding as SigV4 wants it: everything but unreserved characters. */
export function uriEncode(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export const encodePath = (segments: string[]) => '/' + segments.map(uriEncode).join('/');

export class SigV4Signer {
  private cachedDay = '';
  private cachedKey: Buffer = Buffer.alloc(0);

  constructor(private readonly credentials: SigV4Credentials) {}

  presign(request: PresignRequest): string {
    const now = request.now ?? new Date();
    const amzDate = toAmzDate(now);
    const day = amzDate.slice(0, 8);
    const headers: Record<string, string> = { ...request.headers, host: new URL(request.origin).host };
    const signedHeaders = Object.keys(headers).sort();
    const params: [string, string][] = [
      ...Object.entries(request.query ?? {}),
      ['X-Amz-Algorithm', ALGORITHM],
      ['X-Amz-Credential', `${this.credentials.accessKeyId}/${this.scope(day)}`],
      ['X-Amz-Date', amzDate],
      ['X-Amz-Expires', String(request.expiresInSeconds)],
      ['X-Amz-SignedHeaders', signedHeaders.join(';')],
    ];
    const path = encodePath(request.pathSegments);
    const query = canonicalQuery(params);
    const signature = this.signature(request.method, path, query, headers, signedHeaders, amzDate);
    return `${request.origin}${path}?${query}&X-Amz-Signature=${signature}`;
  }

  verify(request: IncomingSignedRequest): VerifyResult {
    const params = parseQueryStrict(request.rawQuery);
    if (!params) return { ok: false, reason: 'malformed' };
    const given = params.get('X-Amz-Signature');
    const amzDate = params.get('X-Amz-Date') ?? '';
    const expires = Number(params.get('X-Amz-Expires'));
    const signedHeaders = (params.get('X-Amz-SignedHeaders') ?? '').split(';');
    const signedAt = parseAmzDate(amzDate);
    if (
      given === undefined ||
      !/^[0-9a-f]{64}$/.test(given) ||
      params.get('X-Amz-Algorithm') !== ALGORITHM ||
      params.get('X-Amz-Credential') !== `${this.credentials.accessKeyId}/${this.scope(amzDate.slice(0, 8))}` ||
      signedAt === null ||
      !Number.isInteger(expires) ||
      expires < 1 ||
      expires > MAX_EXPIRES_SECONDS ||
      !signedHeaders.includes('host') ||
      signedHeaders.some((h) => h === '' || h !== h.toLowerCase()) ||
      [...signedHeaders].sort().join(';') !== signedHeaders.join(';')
    ) {
      return { ok: false, reason: 'malformed' };
    }

    const headers: Record<string, string> = {};
    for (const name of signedHeaders) {
      const value = name === 'host' ? request.host : request.headers[name];
      if (Array.isArray(value)) return { ok: false, reason: 'signature' };
      headers[name] = value ?? '';
    }
    const unsigned = [...params].filter(([k]) => k !== 'X-Amz-Signature');
    const expected = this.signature(
      request.method,
      encodePath(request.pathSegments),
      canonicalQuery(unsigned),
      headers,
      signedHeaders,
      amzDate,
    );
    if (!timingSafeEqual(Buffer.from(expected, 'hex'), Buffer.from(given, 'hex'))) {
      return { ok: false, reason: 'signature' };
    }
    // Expiry is judged only once the signature is known good, as S3 does.
    const nowMs = (request.now ?? new Date()).getTime();
    if (nowMs > signedAt + expires * 1000 || signedAt > nowMs + MAX_CLOCK_SKEW_MS) {
      return { ok: false, reason: 'expired' };
    }
    return { ok: true, params, signedHeaders };
  }

  private scope(day: string): string {
    return `${day}/${this.credentials.region}/${this.credentials.service}/aws4_request`;
  }

  private signature(
    method: string,
    path: string,
    query: string,
    headers: Record<string, string>,
    signedHeaders: string[],
    amzDate: string,
  ): string {
    const canonicalHeaders = signedHeaders.map((h) => `${h}:${(headers[h] ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
    const canonicalRequest = [method, path, query, canonicalHeaders, signedHeaders.join(';'), UNSIGNED_PAYLOAD].join('\n');
    const day = amzDate.slice(0, 8);
    const stringToSign = [ALGORITHM, amzDate, this.scope(day), sha256Hex(canonicalRequest)].join('\n');
    return createHmac('sha256', this.signingKey(day)).update(stringToSign).digest('hex');
  }

  private signingKey(day: string): Buffer {
    if (day !== this.cachedDay) {
      const { secretAccessKey, region, service } = this.credentials;
      const kDate = hmac(`AWS4${secretAccessKey}`, day);
      this.cachedKey = hmac(hmac(hmac(kDate, region), service), 'aws4_request');
      this.cachedDay = day;
    }
    return this.cachedKey;
  }
}

function canonicalQuery(params: [string, string][]): string {
  return params
    .map(([k, v]) => [uriEncode(k), uriEncode(v)] as const)
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

/** Parses a query string; null when it is malformed or names any parameter twice. */
function parseQueryStrict(raw: string): Map<string, string> | null {
  const params = new Map<string, string>();
  if (raw === '') return params;
  for (const part of raw.split('&')) {
    const eq = part.indexOf('=');
    let name: string;
    let value: string;
    try {
      name = decodeURIComponent((eq < 0 ? part : part.slice(0, eq)).replace(/\+/g, ' '));
      value = eq < 0 ? '' : decodeURIComponent(part.slice(eq + 1).replace(/\+/g, ' '));
    } catch {
      return null;
    }
    if (params.has(name)) return null;
    params.set(name, value);
  }
  return params;
}

function toAmzDate(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

function parseAmzDate(value: string): number | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!m) return null;
  const ms = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
  return Number.isNaN(ms) ? null : ms;
}

const hmac = (key: string | Buffer, data: string) => createHmac('sha256', key).update(data).digest();
const sha256Hex = (data: string) => createHash('sha256').update(data).digest('hex');
