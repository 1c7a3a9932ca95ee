import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import { Readable } from 'node:stream';
import type { DiskStore } from '../../storage/disk/disk-store.js';
import { StorageRefusal } from '../../storage/disk/storage-refusal.js';
import type { Uploads } from '../../domain/uploads.js';
import { ObjectParams, S3Error, SignedUrlQuery } from '../../contract/objects.js';
import { documentedAs } from '../openapi.js';

// The endpoint's documentation only (see `documentedAs`): nothing here validates a request,
// so the store alone decides, with S3's answers, as before.
const s3Error = (description: string) => ({ description, content: { 'application/xml': { schema: S3Error } } });
const BYTES = { content: { '*/*': { schema: { type: 'string', format: 'binary' } } } };

const DOWNLOAD_HEADERS = {
  etag: { type: 'string' },
  'content-type': { type: 'string' },
  'content-disposition': { type: 'string' },
  'content-length': { type: 'integer' },
  'accept-ranges': { type: 'string', enum: ['bytes'] },
};

const DOCS = {
  put: documentedAs({
    operationId: 'putObject',
    summary: 'The disk store only: PUT the bytes of an upload (or of one part) to its presigned URL',
    description:
      'The URL a presign, `/api/s3/params` or a part signing answered: signed, single-use, bound to its Content-Type (and Content-Length when declared). ' +
      'With `partNumber` and `uploadId`, one part of a multipart upload. `Expect: 100-continue` is answered only once every check passed. Refusals are S3’s XML.',
    tags: ['uploads'],
    params: ObjectParams,
    querystring: SignedUrlQuery,
    body: BYTES,
    response: {
      200: { description: 'Stored; the `etag` header names the bytes', type: 'null', headers: { etag: { type: 'string' } } },
      400: s3Error('`IncompleteBody`: fewer bytes than Content-Length'),
      403: s3Error('`SignatureDoesNotMatch` or `AccessDenied`: a bad, expired or used URL, or another Content-Type'),
      404: s3Error('`NoSuchUpload`: the multipart upload is gone'),
      413: s3Error('`EntityTooLarge`: more than the upload may have'),
      503: s3Error('`SlowDown`: the store is full or busy; retry'),
    },
  }),
  get: documentedAs(
    {
      operationId: 'getObject',
      summary: 'The disk store only: GET an object from its presigned download URL (a `video_url`); one byte range with `Range`',
      tags: ['uploads'],
      params: ObjectParams,
      querystring: SignedUrlQuery,
      response: {
        200: { description: 'The object', headers: DOWNLOAD_HEADERS, ...BYTES },
        206: {
          description: 'The range asked for',
          headers: { ...DOWNLOAD_HEADERS, 'content-range': { type: 'string' } },
          ...BYTES,
        },
        403: s3Error('`SignatureDoesNotMatch` or `AccessDenied`: a bad or expired URL'),
        404: s3Error('`NoSuchKey`'),
        416: s3Error('`InvalidRange`'),
      },
    },
    {
      operationId: 'headObject',
      summary: 'The disk store only: HEAD of an object through its presigned download URL (ignores `Range`)',
      tags: ['uploads'],
      params: ObjectParams,
      querystring: SignedUrlQuery,
      response: {
        200: { description: 'The object’s headers; no body', type: 'null', headers: DOWNLOAD_HEADERS },
        403: { description: 'A bad or expired URL (no body)', type: 'null' },
        404: { description: 'No such key (no body)', type: 'null' },
      },
    },
  ),
};

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

  app.put(url, { config: DOCS.put }, async (request, reply) => {
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
  app.get(url, { config: DOCS.get }, async (request, reply) => {
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
    // S3's 405, not an operation.
    schema: { hide: true },
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
