import type { CompleteMultipartResponse, CreateMultipartRequest, CreateMultipartResponse, SignedPart } from '../contract/index.js';
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
  signal?: AbortSignal | undefined;
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

/**
 * Uploads `source` through Keyframe's Companion-compatible routes (docs/api.md, "Multipart
 * uploads"): create (with the size when known, which fixes the part plan), `partConcurrency`
 * parts in flight, each signed (again for a retry) and PUT to the store, then complete with
 * the ETags. On any failure or abort the upload is aborted on the server before this rejects.
 * Resolves with the object key.
 */
export async function uploadMultipart(source: UploadSource, options: MultipartOptions): Promise<string> {
  const { api, signal } = options;
  const body: CreateMultipartRequest = {
    type: options.contentType,
    ...(options.fileName !== undefined ? { filename: options.fileName } : {}),
    ...(source.size !== null ? { size: source.size } : {}),
  };
  const created = await api.request<CreateMultipartResponse>('POST', '/api/s3/multipart', { body, signal });
  const path = `/api/s3/multipart/${encodeURIComponent(created.uploadId)}`;
  const keyQuery = query({ key: created.key });
  const partSize = created.part_size ?? MIN_PART_BYTES;

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
      options.onRead(next.value.payload.length);
      await sendPart(next.value.number, next.value.payload);
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
    return created.key;
  } catch (err) {
    // Not awaited: a pull may still be pending on a stalled source, which close() then ends.
    void parts.return?.(undefined)?.catch(() => undefined);
    source.close?.();
    // Not under the caller's signal: an aborted upload must still be aborted on the server.
    await api.request('DELETE', `${path}${keyQuery}`, { signal: AbortSignal.timeout(15_000) }).catch(() => undefined);
    throw signal?.aborted ? abortError(signal) : err;
  }
}
