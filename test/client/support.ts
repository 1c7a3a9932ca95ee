/**
 * A fetch for the client tests that watches the client's traffic (and, asked to, cuts one part's
 * PUT mid-body): real requests to the real server and store, only observed or interrupted.
 */
export interface TrafficLog {
  /** PUT attempts per part number. */
  partPuts: Map<number, number>;
  /** Part URLs signed per part number (GET /api/s3/multipart/:uploadId/:partNumber). */
  partSigns: Map<number, number>;
  /** Single PUTs (no part number). */
  singlePuts: number;
  /** The create answers (POST /api/s3/multipart). */
  created: { uploadId: string; key: string; part_size?: number; part_count?: number }[];
  /** The create bodies the client sent. */
  createBodies: Record<string, unknown>[];
}

const bump = (map: Map<number, number>, n: number) => map.set(n, (map.get(n) ?? 0) + 1);

export function watchingFetch(options: { cutFirstPutOfPart?: number; cutFirstSinglePut?: boolean; cutAfterBytes?: number } = {}): { fetch: typeof fetch; log: TrafficLog } {
  const log: TrafficLog = { partPuts: new Map(), partSigns: new Map(), singlePuts: 0, created: [], createBodies: [] };
  const wrapped: typeof fetch = async (input, init) => {
    const url = new URL(String(input));
    const method = init?.method ?? 'GET';
    const part = url.searchParams.get('partNumber');
    if (method === 'PUT') {
      if (part !== null) bump(log.partPuts, Number(part));
      else log.singlePuts++;
      const first = part !== null ? Number(part) === options.cutFirstPutOfPart && log.partPuts.get(Number(part)) === 1 : options.cutFirstSinglePut && log.singlePuts === 1;
      if (first) {
        // A real request whose body fails once some of it went out: undici drops the connection, and
        // the store sees a part cut short.
        const body = init!.body as unknown as AsyncIterable<Uint8Array>;
        const limit = options.cutAfterBytes ?? 1024 * 1024;
        async function* cut(): AsyncIterable<Uint8Array> {
          let sent = 0;
          for await (const chunk of body) {
            yield chunk;
            sent += chunk.byteLength;
            if (sent >= limit) throw new Error('connection cut by the test');
          }
        }
        return fetch(url, { ...init, body: cut() as unknown as BodyInit });
      }
    }
    const signed = /^\/api\/s3\/multipart\/[^/]+\/(\d+)$/.exec(url.pathname);
    if (method === 'GET' && signed) bump(log.partSigns, Number(signed[1]));
    const res = await fetch(input, init);
    if (method === 'POST' && url.pathname === '/api/s3/multipart') {
      log.createBodies.push(JSON.parse(String(init?.body)));
      if (res.ok) log.created.push(await res.clone().json());
    }
    return res;
  };
  return { fetch: wrapped, log };
}
