import net from 'node:net';

/**
 * A TCP proxy on loopback in front of a real service, for tests of what a client does when the
 * service goes away: `cut` closes every connection and refuses new ones (as a stopped Redis
 * would), `restore` accepts again on the same port. Real sockets, no mock of the client.
 */
export interface TcpProxy {
  port: number;
  /** Bytes the clients have sent through it so far. */
  bytesSent(): number;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export interface TcpProxyOptions {
  /** Caps what all clients together send upstream (a slow uplink); downloads are not slowed. */
  bytesPerSecond?: number;
}

/** `target` is read at each connection, so a test may fill in a port known only once the proxy runs. */
export async function tcpProxy(target: { host: string; port: number }, options: TcpProxyOptions = {}): Promise<TcpProxy> {
  let sent = 0;
  // When the shared uplink is free again (ms since the epoch).
  let uplinkFreeAt = 0;
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    track(client);
    track(upstream);
    upstream.pipe(client);
    client.on('data', (chunk: Buffer) => {
      sent += chunk.length;
      const flowing = upstream.write(chunk);
      if (!options.bytesPerSecond) {
        if (!flowing) {
          client.pause();
          upstream.once('drain', () => client.resume());
        }
        return;
      }
      const now = Date.now();
      uplinkFreeAt = Math.max(now, uplinkFreeAt) + (chunk.length / options.bytesPerSecond) * 1000;
      client.pause();
      setTimeout(() => client.resume(), uplinkFreeAt - now);
    });
    client.once('end', () => upstream.end());
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  await listen(0);
  const port = (server.address() as net.AddressInfo).port;
  const cut = async () => {
    if (!server.listening) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    await closed;
  };
  return {
    port,
    bytesSent: () => sent,
    cut,
    restore: () => listen(port),
    close: cut,
  };
}
