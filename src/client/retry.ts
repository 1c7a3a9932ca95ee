import { abortError, KeyframeError } from './errors.js';

/** Waits `ms`, or rejects with the signal's abort (as a KeyframeError) as soon as it fires. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Retry `attempt` (1, 2, …) waits 0.5 s, 1 s, 2 s, … up to 8 s, with jitter so that parallel parts do not retry in step. */
export const retryDelayMs = (attempt: number): number => Math.min(8000, 500 * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);

/** Whether a failed store request is worth another attempt: no answer at all, a 5xx, or a 429. */
export const isRetryableStatus = (status: number): boolean => status === 0 || status === 429 || status >= 500;

/** A failure that another attempt may not meet: no answer at all, or a 5xx or 429 from Keyframe; never an abort or a timeout. */
export const isTransientError = (err: unknown): boolean =>
  err instanceof KeyframeError && (err.error === 'network_error' || (err.status !== 0 && isRetryableStatus(err.status)));
