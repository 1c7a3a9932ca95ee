import { errorFromBody, KeyframeError, transportError } from './errors.js';

export interface ApiOptions {
  baseUrl: string;
  apiKey: string;
  fetch: typeof fetch;
}

/** Keyframe's JSON API with the caller's Bearer key: every non-2xx answer is thrown as a KeyframeError. */
export class Api {
  private readonly base: string;

  constructor(private readonly options: ApiOptions) {
    this.base = options.baseUrl.replace(/\/+$/, '');
  }

  async request<T>(method: string, path: string, init: { body?: unknown; signal?: AbortSignal | undefined } = {}): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.options.apiKey}`, accept: 'application/json' };
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    let text: string;
    try {
      res = await this.options.fetch(`${this.base}${path}`, {
        method,
        headers,
        body: init.body === undefined ? null : JSON.stringify(init.body),
        ...(init.signal ? { signal: init.signal } : {}),
      });
      text = await res.text();
    } catch (err) {
      throw transportError(err, init.signal);
    }
    if (!res.ok) throw errorFromBody(res.status, text);
    try {
      return (text ? JSON.parse(text) : {}) as T;
    } catch {
      throw new KeyframeError('invalid_response', `${method} ${path.split('?')[0]} answered ${res.status} with a body that is not JSON`, res.status);
    }
  }
}

/** `?key=…` and friends, encoded. */
export const query = (params: Record<string, string>): string => `?${new URLSearchParams(params).toString()}`;
