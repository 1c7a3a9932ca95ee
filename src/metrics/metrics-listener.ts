import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** The metrics in the Prometheus text format (src/metrics/prometheus.ts). */
export interface MetricsExposition {
  readonly contentType: string;
  render(): Promise<string>;
}

export interface MetricsListener {
  /** Where it listens: `http://host:port` (the port the OS chose when 0 was asked). */
  url: string;
  port: number;
  /** Stops listening and drops open (keep-alive) connections; idempotent. */
  close(): Promise<void>;
}

/**
 * The second listener `KEYFRAME_METRICS_LISTEN` opens, in every role (the worker included): GET
 * /metrics without a token, nothing else (404; 405 for another method). Its protection is the
 * address it binds, one only the scraper reaches; it never serves the API.
 */
export async function startMetricsListener(
  metrics: MetricsExposition,
  address: { host: string; port: number },
  onError: (err: unknown) => void = () => {},
): Promise<MetricsListener> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?', 1)[0];
    if (path !== '/metrics') return void res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return void res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end();
    metrics.render().then(
      (body) => res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : body),
      (err: unknown) => {
        onError(err);
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n');
      },
    );
  });
  // A scraper that connects and sends nothing is dropped; scrapes are small and quick.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', onError);
  const { port } = server.address() as AddressInfo;
  const host = address.host.includes(':') ? `[${address.host}]` : address.host === '0.0.0.0' ? '127.0.0.1' : address.host;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}
