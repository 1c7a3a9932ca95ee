/**
 * The one error catalogue: every error a client can see, with its HTTP status.
 * Codes up to `generation_error` are Prism's documented ones; the rest are ours,
 * for cases Prism does not document. `src/http/errors.ts` maps them to HTTP once.
 */
export const ERROR_STATUS = {
  validation_error: 400,
  pricing_error: 400,
  unauthorized: 401,
  insufficient_credits: 402,
  forbidden: 403,
  not_found: 404,
  invalid_template: 422,
  server_error: 500,
  generation_error: 500,
  method_not_allowed: 405,
  request_timeout: 408,
  payload_too_large: 413,
  rate_limited: 429,
  headers_too_large: 431,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** The catalogue's code for an HTTP status, or undefined when it has none. */
export function codeForStatus(status: number): ErrorCode | undefined {
  return (Object.keys(ERROR_STATUS) as ErrorCode[]).find((c) => ERROR_STATUS[c] === status);
}

/** An error whose message is safe to show to the client as it is. */
export class ApiError extends Error {
  /** With `rate_limited`: seconds until a retry can succeed, sent as `Retry-After`. */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions & { retryAfterSeconds?: number },
  ) {
    super(message, options);
    this.name = 'ApiError';
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export const INVALID_API_KEY = 'Invalid or missing API key';

export const validationError = (message: string) => new ApiError('validation_error', message);
export const notFound = (message: string) => new ApiError('not_found', message);

/** 429 `rate_limited`: a per-user limit or quota is used up; `retryAfterSeconds` says when to try again. */
export const rateLimited = (message: string, retryAfterSeconds: number) =>
  new ApiError('rate_limited', message, { retryAfterSeconds: Math.max(1, Math.ceil(retryAfterSeconds)) });
