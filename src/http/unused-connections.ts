import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';

/**
 * Closes, when the app closes, the connections that never sent a request: a browser's
 * preconnect, a client's spare socket. Node's `closeIdleConnections` (which Fastify calls)
 * leaves them open, and `server.close()` then waits for them until their timeout, so an
 * orderly shutdown would run into its time limit and exit 1. Connections with a request in
 * flight are left to finish, as before.
 */
export function closeUnusedConnectionsOnClose(app: FastifyInstance): void {
  const unused = new Set<Socket>();
  app.server.on('connection', (socket: Socket) => {
    unused.add(socket);
    socket.once('close', () => unused.delete(socket));
  });
  app.server.on('request', (request: { socket: Socket }) => unused.delete(request.socket));
  app.addHook('preClose', async () => {
    for (const socket of unused) socket.destroy();
  });
}
