import { abortError, transportError, uploadRefusal } from './errors.js';
import { delay, isRetryableStatus, isTransientError, retryDelayMs } from './retry.js';
import type { Payload, PayloadData } from './source.js';

/** The store's answer to one PUT. */
interface PutAnswer {
  status: number;
  etag: string | null;
  text: string;
}

export interface PutTransport {
  fetch: typeof fetch;
  /** XMLHttpRequest, whose upload events report progress, where a browser has it and no fetch was given. */
  useXhr: boolean;
}

const isChunks = (data: PayloadData): data is AsyncIterable<Uint8Array> =>
  typeof (data as Partial<AsyncIterable<Uint8Array>>)[Symbol.asyncIterator] === 'function';

/** Chunks passed on to fetch, counted once fetch has taken each one (i.e. as they are written out). */
async function* counted(chunks: AsyncIterable<Uint8Array>, onSent: (bytes: number) => void): AsyncIterable<Uint8Array> {
  for await (const chunk of chunks) {
    yield chunk;
    onSent(chunk.byteLength);
  }
}

function xhrPut(url: string, data: Blob | Uint8Array, headers: Record<string, string>, onSent: (bytes: number) => void, signal?: AbortSignal): Promise<PutAnswer> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url);
    // Content-Length is the browser's to set (from the body); only the presigned type is ours.
    for (const [name, value] of Object.entries(headers)) if (name !== 'content-length') xhr.setRequestHeader(name, value);
    let reported = 0;
    xhr.upload.onprogress = (event) => {
      onSent(event.loaded - reported);
      reported = event.loaded;
    };
    const onAbort = () => xhr.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const done = () => signal?.removeEventListener('abort', onAbort);
    xhr.onload = () => {
      done();
      resolve({ status: xhr.status, etag: xhr.getResponseHeader('etag'), text: xhr.responseText });
    };
    xhr.onerror = () => {
      done();
      reject(transportError(new TypeError('XMLHttpRequest failed (network error or CORS)'), signal));
    };
    xhr.onabort = () => {
      done();
      reject(signal ? abortError(signal) : transportError(new TypeError('XMLHttpRequest aborted'), undefined));
    };
    xhr.send(data as XMLHttpRequestBodyInit);
  });
}

async function fetchPut(
  fetchImpl: typeof fetch,
  url: string,
  payload: Payload,
  data: PayloadData,
  headers: Record<string, string>,
  onSent: (bytes: number) => void,
  signal?: AbortSignal,
): Promise<PutAnswer> {
  const streamed = isChunks(data);
  try {
    const res = await fetchImpl(url, {
      method: 'PUT',
      // A streamed body needs its length said, or it would go chunked (which presigned URLs refuse).
      headers: streamed ? { ...headers, 'content-length': String(payload.length) } : headers,
      body: (streamed ? counted(data, onSent) : data) as BodyInit,
      ...(streamed ? { duplex: 'half' } : {}),
      ...(signal ? { signal } : {}),
    } as RequestInit);
    const text = await res.text();
    return { status: res.status, etag: res.headers.get('etag'), text };
  } catch (err) {
    throw transportError(err, signal);
  }
}

export interface PutOptions {
  /** The upload URL of each attempt: a multipart part's is signed again for a retry. */
  url: (attempt: number) => Promise<string> | string;
  headers: Record<string, string>;
  /** Retries after the first attempt, for a network error, a 5xx or a 429. */
  retries: number;
  /** Bytes sent (negative when a failed attempt's bytes are taken back). */
  onSent: (bytes: number) => void;
  signal?: AbortSignal | undefined;
}

/** PUTs one payload to the store, retrying failures worth retrying; resolves with the store's ETag (or null). */
export async function putWithRetries(transport: PutTransport, payload: Payload, options: PutOptions): Promise<string | null> {
  for (let attempt = 0; ; attempt++) {
    if (options.signal?.aborted) throw abortError(options.signal);
    let sent = 0;
    const onSent = (bytes: number) => {
      sent += bytes;
      options.onSent(bytes);
    };
    let failure: Error;
    let retryable: boolean;
    try {
      const url = await options.url(attempt);
      const data = payload.open();
      const answer =
        transport.useXhr && !isChunks(data)
          ? await xhrPut(url, data, options.headers, onSent, options.signal)
          : await fetchPut(transport.fetch, url, payload, data, options.headers, onSent, options.signal);
      if (answer.status >= 200 && answer.status < 300) {
        if (sent !== payload.length) onSent(payload.length - sent);
        return answer.etag;
      }
      failure = uploadRefusal(answer.status, answer.text);
      retryable = isRetryableStatus(answer.status);
    } catch (err) {
      failure = err as Error;
      // No answer from the store, or a refusal worth retrying from Keyframe while signing the URL; never an abort.
      retryable = isTransientError(err);
    }
    onSent(-sent);
    if (!retryable || attempt >= options.retries || options.signal?.aborted) throw failure;
    await delay(retryDelayMs(attempt + 1), options.signal);
  }
}
