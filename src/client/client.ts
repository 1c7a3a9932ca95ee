import type {
  CreateGenerationRequest,
  CreateGenerationResponse,
  GenerationStatus,
  ModelList,
  PresignRequest,
  PresignResponse,
  UploadStatusResponse,
} from '../contract/index.js';
import { Api, query } from './api.js';
import { detectContentType } from './content-type.js';
import { delay, isTransientError } from './retry.js';
import { KeyframeError } from './errors.js';
import { uploadMultipart, type MultipartResume } from './multipart.js';
import { putWithRetries, type PutTransport } from './put.js';
import { browserSource, type UploadInput, type UploadSource } from './source.js';

export interface KeyframeClientOptions {
  /** e.g. http://127.0.0.1:3000 (a trailing slash is fine). */
  baseUrl: string;
  /** prism_sk_…, sent as `Authorization: Bearer …`. */
  apiKey: string;
  /** Default: globalThis.fetch. Given one, every request goes through it (no XMLHttpRequest either). */
  fetch?: typeof fetch;
  /** Bytes; at or above it uploads use the multipart routes. Default 100 MiB (Uppy's). */
  multipartThreshold?: number;
  /** Parts in flight at once. Default 4. */
  partConcurrency?: number;
  /** Retries of one failed part or single PUT (network error, 5xx, 429), with backoff. Default 3. */
  retries?: number;
}

export interface UploadOptions {
  /** The type to presign with; detected from the first bytes when not given. */
  contentType?: string;
  /** Bookkeeping only; default: a File's name, or a path's last segment. */
  fileName?: string;
  /** Bytes sent so far; for a stream of unknown length `total` is what has been read so far, until the end. */
  onProgress?: (progress: { loaded: number; total: number }) => void;
  /**
   * A multipart upload an earlier run of the same file left open (what `onMultipartCreated` was
   * told): the parts the server lists are not sent again. One the server no longer knows
   * (completed, aborted, expired) starts a new upload instead.
   */
  resume?: MultipartResume;
  /**
   * Told when a multipart upload has been created, with what `resume` needs. Given, a multipart
   * upload that fails (the network, the store) is left open on the server to be resumed until it
   * expires; without it, or when `signal` aborts, a failed upload is aborted there.
   */
  onMultipartCreated?: (resume: MultipartResume) => void;
  signal?: AbortSignal;
}

export interface UploadedReference {
  s3_key: string;
  content_type: string;
  size: number;
  /** The one status call after the upload, which verifies it: normally `verified` or `rejected` (with its `reason`). */
  status: UploadStatusResponse;
}

export interface WaitOptions {
  /** Default 15 minutes; then the wait rejects with KeyframeError('timeout'). */
  timeoutMs?: number;
  signal?: AbortSignal;
  onStatus?: (status: GenerationStatus) => void;
}

const MiB = 1024 * 1024;
const FIRST_POLL_MS = 2000;
const MAX_POLL_MS = 10_000;

/** Keyframe's typed client (browser-safe: fetch, URL, AbortSignal, Blob, and XMLHttpRequest where it exists). */
export class KeyframeClient {
  protected readonly api: Api;
  protected readonly transport: PutTransport;
  /** The server, as given. */
  readonly baseUrl: string;
  readonly multipartThreshold: number;
  readonly partConcurrency: number;
  readonly retries: number;

  constructor(options: KeyframeClientOptions) {
    if (!options.baseUrl) throw new TypeError('KeyframeClient: baseUrl is required');
    if (!options.apiKey) throw new TypeError('KeyframeClient: apiKey is required');
    const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.baseUrl = options.baseUrl;
    this.api = new Api({ baseUrl: options.baseUrl, apiKey: options.apiKey, fetch: fetchImpl });
    this.transport = { fetch: fetchImpl, useXhr: options.fetch === undefined && typeof XMLHttpRequest !== 'undefined' };
    this.multipartThreshold = options.multipartThreshold ?? 100 * MiB;
    this.partConcurrency = Math.max(1, options.partConcurrency ?? 4);
    this.retries = Math.max(0, options.retries ?? 3);
  }

  presign(request: PresignRequest, options: { signal?: AbortSignal } = {}): Promise<PresignResponse> {
    return this.api.request<PresignResponse>('POST', '/api/s3/presign-upload', { body: request, signal: options.signal });
  }

  /**
   * Detects the type from the bytes unless `contentType` is given; presigns with the size and PUTs
   * once below `multipartThreshold`, uses the multipart routes at or above it; then asks the status
   * once, which verifies the upload. A rejected upload is a result, not an exception.
   */
  async uploadReference(input: UploadInput, options: UploadOptions = {}): Promise<UploadedReference> {
    return this.uploadSource(await browserSource(input), options);
  }

  /** The upload of any source (the Node entry brings its own: files, streams). */
  protected async uploadSource(source: UploadSource, options: UploadOptions): Promise<UploadedReference> {
    const { signal, onProgress } = options;
    // Presign keeps at most 255 characters of a name; a File's or a path's own may be longer.
    const fileName = options.fileName ?? source.name?.slice(0, 255);
    try {
      const contentType = options.contentType ?? (await detectContentType(source.head));
      const progress = { loaded: 0, total: source.size ?? 0 };
      const report = () => onProgress?.({ ...progress });
      const onSent = (bytes: number) => {
        if (bytes === 0) return;
        progress.loaded += bytes;
        report();
      };
      report();

      const key =
        source.size !== null && source.size < this.multipartThreshold
          ? await this.putOnce(source, source.size, { contentType, fileName, onSent, signal })
          : await uploadMultipart(source, {
              api: this.api,
              transport: this.transport,
              partConcurrency: this.partConcurrency,
              retries: this.retries,
              contentType,
              fileName,
              onSent,
              onRead: (bytes) => {
                if (source.size !== null) return;
                progress.total += bytes;
                report();
              },
              resume: options.resume,
              onCreated: options.onMultipartCreated,
              signal,
            });
      const status = await this.statusOf(key, signal);
      return { s3_key: key, content_type: status.content_type, size: status.size ?? progress.loaded, status };
    } finally {
      source.close?.();
    }
  }

  /** Presign with the exact size, then one PUT (retried) with exactly the presigned type; resolves with the key. */
  private async putOnce(
    source: UploadSource,
    size: number,
    options: { contentType: string; fileName: string | undefined; onSent: (bytes: number) => void; signal: AbortSignal | undefined },
  ): Promise<string> {
    const { contentType, fileName, onSent, signal } = options;
    const presigned = await this.presign(
      {
        kind: 'upload',
        contentType,
        ...(fileName !== undefined ? { fileName } : {}),
        ...(size > 0 ? { contentLength: size } : {}),
      },
      signal ? { signal } : {},
    );
    await putWithRetries(this.transport, source.whole(), {
      url: () => presigned.upload_url,
      // Exactly the presigned type: it is signed into the URL.
      headers: { 'content-type': presigned.content_type },
      retries: this.retries,
      onSent,
      signal,
    });
    return presigned.s3_key;
  }

  uploadStatus(key: string): Promise<UploadStatusResponse> {
    return this.statusOf(key, undefined);
  }

  private statusOf(key: string, signal: AbortSignal | undefined): Promise<UploadStatusResponse> {
    return this.api.request<UploadStatusResponse>('GET', `/api/uploads/status${query({ key })}`, { signal });
  }

  createGeneration(request: CreateGenerationRequest): Promise<CreateGenerationResponse> {
    return this.api.request<CreateGenerationResponse>('POST', '/api/generations', { body: request });
  }

  getGeneration(id: string, options: { signal?: AbortSignal } = {}): Promise<GenerationStatus> {
    return this.api.request<GenerationStatus>('GET', `/api/generations/${encodeURIComponent(id)}`, { signal: options.signal });
  }

  /**
   * Polls the generation (first after 2 s, then ×1.5 up to 10 s) until it is completed or failed,
   * and resolves with that status (a failed one too). A poll that gets no answer, a 5xx or a 429 is
   * followed by the next one; any other refusal (404, 401) rejects at once. Rejects with
   * KeyframeError('timeout') after `timeoutMs`, or with the signal's reason.
   */
  async waitForGeneration(id: string, options: WaitOptions = {}): Promise<GenerationStatus> {
    const { timeoutMs = 15 * 60_000, signal, onStatus } = options;
    const deadline = Date.now() + timeoutMs;
    let wait = FIRST_POLL_MS;
    try {
      for (;;) {
        await delay(Math.max(0, Math.min(wait, deadline - Date.now())), signal);
        let status: GenerationStatus | null = null;
        try {
          status = await this.getGeneration(id, signal ? { signal } : {});
        } catch (err) {
          // A blip (no answer, a 5xx, a 429) does not end a wait of minutes: the next poll may succeed.
          if (!isTransientError(err) || Date.now() >= deadline) throw err;
        }
        if (status) {
          onStatus?.(status);
          if (status.status !== 'generating') return status;
        }
        if (Date.now() >= deadline) throw new KeyframeError('timeout', `Generation ${id} was still generating after ${timeoutMs} ms`);
        wait = Math.min(wait * 1.5, MAX_POLL_MS);
      }
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      throw err;
    }
  }

  listModels(): Promise<ModelList> {
    return this.api.request<ModelList>('GET', '/api/models');
  }
}
