import type { CompleteMultipartResponse, CreateMultipartRequest, CreateMultipartResponse, ListedPart, SignedPart } from '../contract/index.js';
import { query, type Api } from './api.js';
import { abortError, KeyframeError } from './errors.js';
import { putWithRetries, type PutTransport } from './put.js';
import type { Payload, UploadSource } from './source.js';

/**
 * S3's smallest part but the last (MULTIPART_LIMITS.minPartBytes on the server): the part size
 * of an upload of unknown length, whose part count the server bounds by max_bytes / 5 MiB.
 */
export const MIN_PART_BYTES = 5 * 1024 * 1024;

export interface MultipartOptions {
  api: Api;
  transport: PutTransport;
  partConcurrency: number;
  retries: number;
  contentType: string;
  fileName?: string | undefined;
  /** Bytes sent to the store (negative when a failed attempt's are taken back). */
  onSent: (bytes: number) => void;
  /** Bytes of a part read from the source (how an upload of unknown length learns its total). */
  onRead: (bytes: number) => void;
  /** An upload an earlier run left open: its parts the server lists are not sent again. */
  resume?: MultipartResume | undefined;
  /** Told once the upload exists on the server; given, a failed upload is left open to be resumed (an abort still aborts it). */
  onCreated?: ((resume: MultipartResume) => void) | undefined;
  signal?: AbortSignal | undefined;
}

/**
 * What resuming a multipart upload needs, as `onMultipartCreated` hands it out: keep it (it
 * holds no secret) and pass it back as `resume` with the same file.
 */
export interface MultipartResume {
  key: string;
  uploadId: string;
  /** The size of every part but the last, as the upload was cut. */
  partSize: number;
}

/** An AbortController that also fires when `parent` does: one failed part stops its siblings. */
function childController(parent: AbortSignal | undefined): AbortController {
  const controller = new AbortController();
  if (parent?.aborted) controller.abort(parent.reason);
  else parent?.addEventListener('abort', () => controller.abort(parent.reason), { once: true });
  return controller;
}

/** `promise`, or the signal's abort if it fires first (a stalled source must not hold an aborted upload). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

async function* numbered(parts: AsyncIterable<Payload>): AsyncIterable<{ number: number; payload: Payload }> {
  let number = 0;
  for await (const payload of parts) yield { number: ++number, payload };
}

const pathOf = (uploadId: string) => `/api/s3/multipart/${encodeURIComponent(uploadId)}`;

/**
 * The parts of `resume` the server holds, by number; null when it no longer knows the upload
 * (completed, aborted, expired, or another user's): then a new upload starts.
 */
async function listedParts(api: Api, resume: MultipartResume, signal: AbortSignal | undefined): Promise<Map<number, ListedPart> | null> {
  try {
    const parts = await api.request<ListedPart[]>('GET', `${pathOf(resume.uploadId)}${query({ key: resume.key })}`, { signal });
    return new Map(parts.map((part) => [part.PartNumber, part]));
  } catch (err) {
    if (err instanceof KeyframeError && err.status === 404) return null;
    throw err;
  }
}

async function create(source: UploadSource, options: MultipartOptions): Promise<MultipartResume> {
  const body: CreateMultipartRequest = {
    type: options.contentType,
    ...(options.fileName !== undefined ? { filename: options.fileName } : {}),
    ...(source.size !== null ? { size: source.size } : {}),
  };
  const created = await options.api.request<CreateMultipartResponse>('POST', '/api/s3/multipart', { body, signal: options.signal });
  const resume = { key: created.key, uploadId: created.uploadId, partSize: created.part_size ?? MIN_PART_BYTES };
  options.onCreated?.(resume);
  return resume;
}

/**
 * Uploads `source` through Keyframe's Companion-compatible routes (docs/api.md, "Multipart
 * uploads"): create (with the size when known, which fixes the part plan) or, with `resume`,
 * list the parts the server already holds; `partConcurrency` parts in flight, each signed
 * (again for a retry) and PUT to the store, then complete with the ETags. A listed part of the
 * planned length is kept (as Uppy's resume keeps it); its bytes count as sent. On failure or
 * abort the upload is aborted on the server before this rejects, unless `onCreated` was given
 * and it failed (it is left to be resumed). Resolves with the object key.
 */
export async function uploadMultipart(source: UploadSource, options: MultipartOptions): Promise<string> {
  const { api, signal } = options;
  const held = options.resume ? await listedParts(api, options.resume, signal) : null;
  const { key, uploadId, partSize } = held && options.resume ? options.resume : await create(source, options);
  const path = pathOf(uploadId);
  const keyQuery = query({ key });

  const inner = childController(signal);
  const etags: { PartNumber: number; ETag: string }[] = [];
  let firstError: unknown = null;
  const parts = numbered(source.parts(partSize))[Symbol.asyncIterator]();

  const sendPart = async (number: number, payload: Payload) => {
    const etag = await putWithRetries(options.transport, payload, {
      url: async () => (await api.request<SignedPart>('GET', `${path}/${number}${keyQuery}`, { signal: inner.signal })).url,
      headers: {},
      retries: options.retries,
      onSent: options.onSent,
      signal: inner.signal,
    });
    if (!etag) throw new KeyframeError('upload_failed', `The store answered part ${number} without a readable ETag (its CORS rules must expose ETag)`);
    etags.push({ PartNumber: number, ETag: etag });
  };

  const worker = async () => {
    while (firstError === null) {
      // Async generators queue concurrent next() calls, so the workers pull distinct parts in order.
      const next = await untilAborted(parts.next(), inner.signal);
      if (next.done) return;
      const { number, payload } = next.value;
      options.onRead(payload.length);
      const listed = held?.get(number);
      if (listed && listed.Size === payload.length) {
        etags.push({ PartNumber: number, ETag: listed.ETag });
        options.onSent(payload.length);
      } else {
        await sendPart(number, payload);
      }
    }
  };

  try {
    await Promise.all(
      Array.from({ length: Math.max(1, options.partConcurrency) }, () =>
        worker().catch((err: unknown) => {
          if (firstError === null) firstError = err;
          inner.abort(err);
        }),
      ),
    );
    if (signal?.aborted) throw abortError(signal);
    if (firstError !== null) throw firstError;
    etags.sort((a, b) => a.PartNumber - b.PartNumber);
    await api.request<CompleteMultipartResponse>('POST', `${path}/complete${keyQuery}`, { body: { parts: etags }, signal });
    return key;
  } catch (err) {
    // Not awaited: a pull may still be pending on a stalled source, which close() then ends.
    void parts.return?.(undefined)?.catch(() => undefined);
    source.close?.();
    // Not under the caller's signal: an aborted upload must still be aborted on the server.
    const keepForResume = options.onCreated !== undefined && !signal?.aborted;
    if (!keepForResume) await api.request('DELETE', `${path}${keyQuery}`, { signal: AbortSignal.timeout(15_000) }).catch(() => undefined);
    throw signal?.aborted ? abortError(signal) : err;
  }
}
