import autocannon, { type Result } from 'autocannon';

export interface LoadFigures {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

const PRESIGN_BODY = JSON.stringify({ kind: 'upload', contentType: 'image/png', fileName: 'reference.png' });

/** Loads POST /api/s3/presign-upload of `url` for `seconds` with `connections` keep-alive connections. */
export async function loadPresign(url: string, key: string, connections: number, seconds: number): Promise<LoadFigures> {
  const r = await autocannon({
    url: url + '/api/s3/presign-upload',
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: PRESIGN_BODY,
    connections,
    duration: seconds,
  });
  return figuresOf(r);
}

/** Loads the presign route with a well-formed but unknown key: the answer is a 401 after one key lookup. */
export async function loadAuthMiss(url: string, connections: number, seconds: number): Promise<LoadFigures> {
  const r = await autocannon({
    url: url + '/api/s3/presign-upload',
    method: 'POST',
    headers: { authorization: `Bearer prism_sk_${'A'.repeat(43)}`, 'content-type': 'application/json' },
    body: PRESIGN_BODY,
    connections,
    duration: seconds,
  });
  return figuresOf(r);
}

/** Loads GET /api/uploads/status for one verified upload of the caller: one indexed row lookup per request. */
export async function loadStatus(url: string, key: string, s3Key: string, connections: number, seconds: number): Promise<LoadFigures> {
  const r = await autocannon({
    url: `${url}/api/uploads/status?key=${encodeURIComponent(s3Key)}`,
    headers: { authorization: `Bearer ${key}` },
    connections,
    duration: seconds,
  });
  return figuresOf(r);
}

/** What a load reports: requests/s over the whole run, latency percentiles in ms, and every kind of failure. */
function figuresOf(r: Result): LoadFigures {
  return { rps: r.requests.total / r.duration, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.timeouts, non2xx: r.non2xx };
}
