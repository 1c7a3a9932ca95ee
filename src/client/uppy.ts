/**
 * Options for Uppy 6's `@uppy/aws-s3` (6.x) that upload through Keyframe's Companion-compatible
 * multipart routes (docs/api.md, "Multipart uploads") with the caller's API key.
 *
 *   import AwsS3 from '@uppy/aws-s3';
 *   import { keyframeUppyOptions } from 'keyframe/dist/client/uppy.js'; // or copy this file
 *   uppy.use(AwsS3, keyframeUppyOptions({ endpoint: 'https://keyframe.example/api', apiKey: 'prism_sk_…' }));
 *
 * Why: Uppy 6's `companionEndpoint` sends no custom headers (so no Bearer key), and its other
 * mode, `signRequest`, expects a presigned URL for each raw S3 request (create, part, list,
 * complete, abort) and parses S3's XML answers. This `signRequest` calls Keyframe's routes
 * itself, with the `Authorization` header: a part is signed by Keyframe and PUT by Uppy to the
 * store as it is; create, list, complete and abort are Keyframe calls made here, whose answers
 * are handed to Uppy as the S3 XML it parses, in a `data:` URL (which Uppy then requests: no
 * network). Complete names the parts the store holds (Keyframe's list) and Keyframe checks them
 * against the size declared at create, as for any client. Files under Uppy's multipart
 * threshold (100 MB by default) go up with `/api/s3/params` (a presigned PUT).
 *
 * Browser-safe: only `fetch`, `URL` and `crypto.randomUUID`. Uppy 4 and 5 need none of this:
 * `{ endpoint, headers: { authorization: 'Bearer …' } }` (docs/api.md).
 */

export interface KeyframeUppyConfig {
  /** Keyframe's API base, e.g. `https://keyframe.example/api` (the routes are under `${endpoint}/s3/…`). */
  endpoint: string;
  /** A Keyframe API key (`prism_sk_…`), sent as `Authorization: Bearer …`. */
  apiKey: string;
}

/** The request `@uppy/aws-s3` 6.x asks `signRequest` to sign (its `PresignableRequest`). */
export interface UppyS3Request {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE';
  key: string;
  uploadId?: string;
  partNumber?: number;
  contentType?: string;
}

/** What `signRequest` answers (`@uppy/aws-s3` 6.x's `PresignedResponse`). */
export interface UppyPresigned {
  url: string;
  key?: string;
  headers?: Record<string, string>;
}

export interface KeyframeUppyOptions {
  generateObjectKey(file: { name?: string; type?: string; size?: number | null }): string;
  signRequest(request: UppyS3Request): Promise<UppyPresigned>;
}

const xmlEscape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
/** An answer Uppy requests without any network: S3's XML, as its parser reads it. */
const xmlAnswer = (xml: string): string => `data:application/xml,${encodeURIComponent(xml)}`;

export function keyframeUppyOptions({ endpoint, apiKey }: KeyframeUppyConfig): KeyframeUppyOptions {
  const base = endpoint.replace(/\/+$/, '');
  /** Uppy's requested key (made by generateObjectKey below) → the file, whose type and size Keyframe's create needs. */
  const files = new Map<string, { name: string; type: string; size: number | null }>();

  async function api(method: string, path: string, body?: unknown): Promise<any> {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let json: any = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: the status says enough
    }
    if (!res.ok) throw new Error(`Keyframe ${method} ${path.split('?')[0]}: ${res.status} ${json?.message ?? text}`);
    return json;
  }

  const fileOf = (key: string) => {
    const file = files.get(key);
    if (!file) throw new Error(`keyframeUppyOptions: unknown object key ${key} (keep its generateObjectKey)`);
    return file;
  };
  const mp = (uploadId: string, key: string, tail = '') =>
    `/s3/multipart/${encodeURIComponent(uploadId)}${tail}?key=${encodeURIComponent(key)}`;

  return {
    generateObjectKey(file) {
      // A placeholder: Keyframe names the object (its key layout), and the answer's key replaces this one.
      const key = `${crypto.randomUUID()}/${file.name ?? 'file'}`;
      files.set(key, { name: file.name ?? 'file', type: file.type || 'application/octet-stream', size: file.size ?? null });
      return key;
    },

    async signRequest(request) {
      const { method, key, uploadId } = request;
      if (uploadId === undefined) {
        if (method === 'PUT') {
          const file = fileOf(key);
          const q = new URLSearchParams({ type: request.contentType || file.type, filename: file.name });
          if (file.size !== null) q.set('size', String(file.size));
          const params = await api('GET', `/s3/params?${q}`);
          return { url: params.url, key: params.key, headers: params.headers };
        }
        if (method === 'POST') {
          const file = fileOf(key);
          const created = await api('POST', '/s3/multipart', { type: file.type, filename: file.name, ...(file.size !== null ? { size: file.size } : {}) });
          return {
            url: xmlAnswer(`<InitiateMultipartUploadResult><Key>${xmlEscape(created.key)}</Key><UploadId>${xmlEscape(created.uploadId)}</UploadId></InitiateMultipartUploadResult>`),
            key: created.key,
          };
        }
        throw new Error(`keyframeUppyOptions: ${method} of an object is not offered by Keyframe`);
      }
      if (method === 'PUT') {
        const signed = await api('GET', mp(uploadId, key, `/${request.partNumber}`));
        return { url: signed.url };
      }
      const listParts = async () => (await api('GET', mp(uploadId, key))) as { PartNumber: number; ETag: string }[];
      if (method === 'GET') {
        const parts = await listParts();
        const xml = parts.map((p) => `<Part><PartNumber>${p.PartNumber}</PartNumber><ETag>${xmlEscape(p.ETag)}</ETag></Part>`).join('');
        return { url: xmlAnswer(`<ListPartsResult>${xml}</ListPartsResult>`) };
      }
      if (method === 'POST') {
        const parts = (await listParts()).map((p) => ({ PartNumber: p.PartNumber, ETag: p.ETag }));
        const done = await api('POST', mp(uploadId, key, '/complete'), { parts });
        const location = new URL(done.location, `${base}/`).toString();
        return { url: xmlAnswer(`<CompleteMultipartUploadResult><Location>${xmlEscape(location)}</Location><Key>${xmlEscape(done.key)}</Key></CompleteMultipartUploadResult>`) };
      }
      // DELETE: abort. Uppy reads an empty answer as success.
      await api('DELETE', mp(uploadId, key));
      return { url: xmlAnswer('') };
    },
  };
}
