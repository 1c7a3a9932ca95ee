import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import { Readable } from 'node:stream';
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
  // must be checked first, so that a refused client (a 21 MB image, a bad signature, a
  // used URL, a full server) hears the refusal instead of being invited to send a body
  // nobody reads. No PUT is invited here, whatever its request line looks like (an
  // absolute-form `PUT http://host/keyframe/...` does not start with the route prefix):
  // the store's `onAccepted` invites it once every check passed. Keyframe has no other
  // PUT route; a PUT elsewhere is answered 404 without an invitation.
  app.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'PUT') res.writeContinue();
    app.server.emit('request', req, res);
  });

  // Every answer of the store's endpoint, refusals included: a browser must never sniff a type.
  app.addHook('onRequest', async (_request, reply) => {
    reply.header('x-content-type-options', 'nosniff');
  });

  app.put(url, async (request, reply) => {
    const expectsContinue = /100-continue/i.test(request.headers.expect ?? '');
    // A part of a multipart upload (S3's `?partNumber=&uploadId=`): stored beside the upload, no object yet.
    const query = request.query as Record<string, unknown>;
    if (query.partNumber !== undefined || query.uploadId !== undefined) {
      const part = await store.receivePart(
        { method: 'PUT', rawUrl: originForm(request.url), headers: request.headers },
        request.raw,
        () => expectsContinue && reply.raw.writeContinue(),
      );
      return reply.code(200).header('etag', part.etag).send();
    }
    const received = await store.receive(
      { method: 'PUT', rawUrl: originForm(request.url), headers: request.headers },
      request.raw,
      () => expectsContinue && reply.raw.writeContinue(),
    );
    await uploads.recordArrival(received);
    return reply.code(200).header('etag', received.etag).send();
  });

  // GET answers one byte range (206, so a <video> can seek); HEAD (Fastify's, from this
  // route) ignores `Range` as RFC 9110 says, and reads no byte of the object.
  app.get(url, async (request, reply) => {
    const signed = { method: 'GET', rawUrl: originForm(request.url), headers: request.headers } as const;
    const opened = request.method === 'GET' ? await store.openRange(signed) : { ...(await store.open(signed)), range: null };
    const { info, download } = opened;
    reply.header('accept-ranges', 'bytes');
    if (opened.range === 'unsatisfiable') {
      reply.header('content-range', `bytes */${info.size}`);
      throw new StorageRefusal(416, 'InvalidRange', 'The requested range is not satisfiable');
    }
    const { range, stream } = opened;
    reply
      .header('etag', info.etag)
      .header('content-type', download.contentType)
      .header('content-disposition', download.contentDisposition);
    if (range !== null) {
      reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${info.size}`).header('content-length', range.end - range.start + 1);
    } else {
      reply.header('content-length', info.size);
    }
    if (request.method === 'HEAD') {
      stream.destroy(); // closes the file
      return reply.send(Readable.from([]));
    }
    return reply.send(stream);
  });

  app.route({
    method: ['POST', 'DELETE', 'PATCH'],
    url,
    handler: async () => {
      throw StorageRefusal.methodNotAllowed();
    },
  });
};

/**
 * The path and query of a request target: an absolute-form target
 * (`PUT http://host/keyframe/...`, which HTTP/1.1 servers must accept) loses
 * its scheme and authority. The signature binds the configured host, never
 * the one a client names, so nothing is lost by dropping it.
 */
function originForm(target: string): string {
  return target.replace(/^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/, '');
}
