/**
 * The client's one error: a Keyframe refusal (the envelope's `error` and `message`, and the
 * HTTP status), a store's refusal of an upload (`upload_failed`), or a failure with no HTTP
 * answer at all (status 0: `network_error`, `timeout`, `aborted`).
 */
export class KeyframeError extends Error {
  constructor(
    /** Machine-readable: the envelope's code (validation_error, unauthorized, not_found, …) or one of the client's own. */
    readonly error: string,
    message: string,
    /** The HTTP status; 0 when there was no HTTP answer. */
    readonly status: number = 0,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'KeyframeError';
  }
}

/** Parses Keyframe's `{ error, message }` envelope; anything else (a proxy's HTML page) is named by its status. */
export function errorFromBody(status: number, text: string): KeyframeError {
  try {
    const body = JSON.parse(text) as { error?: unknown; message?: unknown };
    if (typeof body?.error === 'string') {
      return new KeyframeError(body.error, typeof body.message === 'string' ? body.message : body.error, status);
    }
  } catch {
    // not JSON: below
  }
  return new KeyframeError(status >= 500 ? 'server_error' : 'http_error', `HTTP ${status}${text ? `: ${text.slice(0, 300)}` : ''}`, status);
}

const xmlField = (xml: string, name: string): string | undefined => new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml)?.[1];

/**
 * A store's refusal of a PUT: S3's XML error (`<Code>`, `<Message>`), Keyframe's envelope, or a
 * bare status, as `upload_failed` with the store's status and its words.
 */
export function uploadRefusal(status: number, text: string): KeyframeError {
  const code = xmlField(text, 'Code');
  if (code !== undefined) return new KeyframeError('upload_failed', `The store refused the upload (${status} ${code}): ${xmlField(text, 'Message') ?? ''}`.trim(), status);
  try {
    const body = JSON.parse(text) as { error?: unknown; message?: unknown };
    if (typeof body?.error === 'string') return new KeyframeError('upload_failed', `The store refused the upload (${status} ${body.error}): ${String(body.message ?? '')}`, status);
  } catch {
    // not JSON: below
  }
  return new KeyframeError('upload_failed', `The store refused the upload (HTTP ${status})${text ? `: ${text.slice(0, 300)}` : ''}`, status);
}

/** What a signal's abort becomes: `aborted` (or `timeout` for AbortSignal.timeout), the reason kept as the cause. */
export function abortError(signal: AbortSignal): KeyframeError {
  const reason: unknown = signal.reason;
  const timedOut = reason instanceof Error && reason.name === 'TimeoutError';
  return new KeyframeError(timedOut ? 'timeout' : 'aborted', timedOut ? 'The request timed out' : 'The request was aborted', 0, { cause: reason });
}

/** A failure of fetch itself (no HTTP answer): the abort if the signal fired, else `network_error`. */
export function transportError(err: unknown, signal: AbortSignal | undefined): KeyframeError {
  if (err instanceof KeyframeError) return err;
  if (signal?.aborted) return abortError(signal);
  const detail = err instanceof Error ? (err.cause instanceof Error ? `${err.message}: ${err.cause.message}` : err.message) : String(err);
  return new KeyframeError('network_error', `No answer from the server: ${detail}`, 0, { cause: err });
}
