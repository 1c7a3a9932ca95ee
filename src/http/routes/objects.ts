import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import type { DiskStore } from '../../storage/disk/disk-store.js';
import { StorageRefusal } from '../../storage/disk/storage-refusal.js';
import type { Uploads } from '../../domain/uploads.js';

/**
 * The embedded store's S3-style endpoint: PUT to a presigned upload URL, GET
 * from a presigned download URL. Answers and refusals look like S3's.
 */
export const objectRoutes: FastifyPluginAsync<{ store: DiskStore; uploads: Uploads }> = async (app, { store, uploads }) => {
  // The body is streamed to disk by the store, whatever its type: no parser may buffer it.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));

  const url = `${store.routePrefix}*`;

  // Node answers `Expect: 100-continue` by itself unless someone listens for it. A PUT
  // to the store must be checked first, so that a refused client (a 21 MB image, a bad
  // signature) hears the refusal instead of being invited to send a body nobody reads.
  app.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'PUT' || !req.url?.startsWith(store.routePrefix)) res.writeContinue();
    app.server.emit('request', req, res);
  });

  app.put(url, async (request, reply) => {
    const expectsContinue = /100-continue/i.test(request.headers.expect ?? '');
    const received = await store.receive(
      { method: 'PUT', rawUrl: request.url, headers: request.headers },
      request.raw,
      () => expectsContinue && reply.raw.writeContinue(),
    );
    await uploads.recordArrival(received);
    return reply.code(200).header('etag', received.etag).send();
  });

  app.get(url, async (request, reply) => {
    const { stream, info } = await store.open({ method: 'GET', rawUrl: request.url, headers: request.headers });
    reply.header('content-length', info.size).header('etag', info.etag);
    return reply.type(info.contentType ?? 'application/octet-stream').send(stream);
  });

  app.route({
    method: ['POST', 'DELETE', 'PATCH'],
    url,
    handler: async () => {
      throw StorageRefusal.methodNotAllowed();
    },
  });
};
