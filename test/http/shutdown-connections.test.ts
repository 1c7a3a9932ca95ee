import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { startTestServer } from '../helpers/server.js';

// An orderly close must not wait for a connection that never sent a request (a browser's
// preconnect): Node's closeIdleConnections leaves those open, and server.close() would wait for
// them until the 2-minute connection timeout (src/http/unused-connections.ts).

describe('closing the server', () => {
  it('closes a connection that never sent a request, and ends well within the connection timeout', async () => {
    const server = await startTestServer();
    const { hostname, port } = new URL(server.url);
    const socket = net.connect(Number(port), hostname);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    // A used keep-alive connection too: closed as idle, as before.
    const used = await fetch(`${server.url}/healthz`);
    expect(used.status).toBe(200);
    const closedByServer = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const stopped = server.stop().then(() => 'stopped' as const);
    // The bound is the test's own: without the fix, close waits for the connection timeout (120 s).
    const outcome = await Promise.race([stopped, new Promise((resolve) => setTimeout(() => resolve('still waiting'), 20_000))]);
    expect(outcome).toBe('stopped');
    await closedByServer;
  }, 30_000);
});
