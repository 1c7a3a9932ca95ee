import net from 'node:net';

/** What came back on a raw connection: the first response, parsed loosely. */
export interface RawResponse {
  /** 0 when the server closed without answering. */
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Everything the server sent, unparsed. */
  raw: string;
}

export interface RawOptions {
  /** Bytes to send, in order; a number pauses that many milliseconds. */
  parts: (Buffer | string | number)[];
  /** Half-close our side after sending (the server sees end of stream). */
  end?: boolean;
  /** Destroy the socket right after sending (a client vanishing mid-request). */
  destroy?: boolean;
  /** Give up waiting for the answer after this long. */
  timeoutMs?: number;
}

/**
 * Sends bytes over a plain TCP connection, so a test can say things that fetch
 * refuses to say (lying Content-Length, invalid UTF-8, truncated bodies).
 */
export function rawRequest(port: number, options: RawOptions): Promise<RawResponse> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(parse(Buffer.concat(chunks).toString('latin1')));
    };
    const timer = setTimeout(finish, options.timeoutMs ?? 5000);
    socket.on('data', (d) => {
      chunks.push(d);
      // One response is enough: stop once its body is complete.
      const parsed = parse(Buffer.concat(chunks).toString('latin1'));
      const length = Number(parsed.headers['content-length']);
      if (parsed.status > 0 && Number.isFinite(length) && Buffer.byteLength(parsed.body, 'latin1') >= length) finish();
    });
    socket.on('error', finish);
    socket.on('close', finish);
    socket.on('connect', async () => {
      for (const part of options.parts) {
        if (socket.destroyed) return;
        if (typeof part === 'number') await new Promise((r) => setTimeout(r, part));
        else socket.write(part);
      }
      if (options.destroy) {
        // Let the written bytes leave before the connection is cut.
        await new Promise((r) => setTimeout(r, 50));
        socket.destroy();
        finish();
      } else if (options.end) socket.end();
    });
  });
}

function parse(raw: string): RawResponse {
  const headEnd = raw.indexOf('\r\n\r\n');
  if (!raw.startsWith('HTTP/1.1 ') || headEnd < 0) return { status: 0, headers: {}, body: '', raw };
  const [statusLine, ...lines] = raw.slice(0, headEnd).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine!.split(' ')[1]), headers, body: raw.slice(headEnd + 4), raw };
}

/** The head of an HTTP/1.1 request with the given headers. */
export function requestHead(method: string, target: string, headers: Record<string, string | number>): string {
  const lines = [`${method} ${target} HTTP/1.1`, 'Host: 127.0.0.1', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  return lines.join('\r\n') + '\r\n\r\n';
}
