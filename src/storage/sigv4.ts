import { createHmac, createSecretKey, hash, timingSafeEqual, type KeyObject } from 'node:crypto';

/**
 * AWS Signature Version 4 in its query-string ("presigned URL") form. The
 * embedded disk store signs its upload and download URLs with it (they look
 * exactly like S3's) and verifies them when they come back; the S3 store signs
 * its URLs for the real service with it. Payloads are UNSIGNED-PAYLOAD,
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

const UNRESERVED_ONLY = /^[A-Za-z0-9\-._~]*$/;

/** RFC 3986 encoding as SigV4 wants it: everything but unreserved characters. */
export function uriEncode(value: string): string {
  // Key segments, dates and ids are unreserved already; this runs a dozen times per signature.
  if (UNRESERVED_ONLY.test(value)) return value;
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export const encodePath = (segments: string[]) => '/' + segments.map(uriEncode).join('/');

export class SigV4Signer {
  private cachedDay = '';
  /** A KeyObject, not a Buffer: createHmac would otherwise import the key on every signature. */
  private cachedKey: KeyObject | null = null;
  private lastSecond = -1;
  private lastAmzDate = '';
  private queryMemoDate = '';
  private readonly queryMemo = new Map<string, string>();
  /** The last origin signed for and its host: signers sign for one origin, and URL parsing is not free. */
  private lastOrigin = '';
  private lastHost = '';

  constructor(private readonly credentials: SigV4Credentials) {}

  presign(request: PresignRequest): string {
    const amzDate = this.amzDate(request.now ?? new Date());
    const headers: Record<string, string> = { ...request.headers, host: this.hostOf(request.origin) };
    const signedHeaders = Object.keys(headers).sort();
    const query = this.presignQuery(amzDate, request.expiresInSeconds, signedHeaders.join(';'), request.query);
    const path = encodePath(request.pathSegments);
    const signature = this.signature(request.method, path, query, headers, signedHeaders, amzDate);
    return `${request.origin}${path}?${query}&X-Amz-Signature=${signature}`;
  }

  /**
   * The canonical query of a presigned URL. Within one second, every URL with
   * the same expiry, signed headers and extra parameters has the same query
   * (the key is in the path), so a busy signer builds each one once a second.
   */
  private presignQuery(amzDate: string, expiresInSeconds: number, signedHeaders: string, query: Record<string, string> = {}): string {
    const memoKey = `${expiresInSeconds} ${signedHeaders} ${JSON.stringify(query)}`;
    if (amzDate !== this.queryMemoDate) {
      this.queryMemo.clear();
      this.queryMemoDate = amzDate;
    }
    let canonical = this.queryMemo.get(memoKey);
    if (canonical === undefined) {
      canonical = canonicalQuery([
        ...Object.entries(query),
        ['X-Amz-Algorithm', ALGORITHM],
        ['X-Amz-Credential', `${this.credentials.accessKeyId}/${this.scope(amzDate.slice(0, 8))}`],
        ['X-Amz-Date', amzDate],
        ['X-Amz-Expires', String(expiresInSeconds)],
        ['X-Amz-SignedHeaders', signedHeaders],
      ]);
      this.queryMemo.set(memoKey, canonical);
    }
    return canonical;
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

  private hostOf(origin: string): string {
    if (origin !== this.lastOrigin) {
      this.lastHost = new URL(origin).host;
      this.lastOrigin = origin;
    }
    return this.lastHost;
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

  private signingKey(day: string): KeyObject {
    if (day !== this.cachedDay || this.cachedKey === null) {
      const { secretAccessKey, region, service } = this.credentials;
      const kDate = hmac(`AWS4${secretAccessKey}`, day);
      this.cachedKey = createSecretKey(hmac(hmac(hmac(kDate, region), service), 'aws4_request'));
      this.cachedDay = day;
    }
    return this.cachedKey;
  }

  /** X-Amz-Date of `now`; a busy signer signs many URLs within the same second. */
  private amzDate(now: Date): string {
    const second = Math.floor(now.getTime() / 1000);
    if (second !== this.lastSecond) {
      this.lastAmzDate = toAmzDate(now);
      this.lastSecond = second;
    }
    return this.lastAmzDate;
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
const sha256Hex = (data: string) => hash('sha256', data, 'hex');
