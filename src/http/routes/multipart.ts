import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { DEFAULT_SCOPE, type ApiKeys } from '../../domain/api-keys.js';
import { rateLimited, validationError } from '../../domain/errors.js';
import type { MultipartUploads } from '../../domain/multipart-uploads.js';
import type { Uploads } from '../../domain/uploads.js';
import { principalOf, requireScope } from '../auth.js';
import { ErrorSchema, errorResponses } from '../schemas.js';

/**
 * Uppy Companion's S3 routes (`@uppy/aws-s3` with `endpoint: '<origin>/api'` and an
 * `Authorization` header), on Keyframe's auth, error envelope and upload records:
 * a multipart upload in parts straight to the store, completed by the server after
 * it checked the total size (src/domain/multipart-uploads.ts), and `/s3/params` for
 * Uppy's single PUT, which is a presign. docs/api.md, "Multipart uploads".
 */

const KeyQuery = Type.Object(
  { key: Type.String({ description: 'The `key` the create answered', minLength: 1, maxLength: 1024 }) },
  { additionalProperties: true },
);

const UploadIdParams = Type.Object({ uploadId: Type.String({ minLength: 1, maxLength: 1024 }) });

const CreateBody = Type.Object(
  {
    type: Type.String({ description: 'MIME type of the file: the presign allow-list', maxLength: 255 }),
    filename: Type.Optional(Type.String({ description: 'Original file name; bookkeeping only (first 255 characters kept)', maxLength: 1024 })),
    metadata: Type.Optional(Type.Unknown({ description: "Uppy's metadata; ignored" })),
    size: Type.Optional(Type.Integer({ description: 'Ours: the exact size of the whole file; fixes the part plan', minimum: 1 })),
    contentLength: Type.Optional(Type.Integer({ description: 'Ours: the same as `size`', minimum: 1 })),
  },
  { additionalProperties: true },
);

const CreateResponse = Type.Object({
  uploadId: Type.String(),
  key: Type.String({ description: 'The object key: the `s3_key` a generation names' }),
  max_bytes: Type.Integer(),
  part_size: Type.Optional(Type.Integer({ description: 'With a declared size: the size of every part but the last' })),
  part_count: Type.Optional(Type.Integer({ description: 'With a declared size: the number of parts' })),
});

const PartParams = Type.Object({
  uploadId: Type.String({ minLength: 1, maxLength: 1024 }),
  partNumber: Type.String({ pattern: '^[0-9]{1,5}$', description: '1 to 10000' }),
});

const BatchQuery = Type.Object(
  {
    key: Type.String({ minLength: 1, maxLength: 1024 }),
    partNumbers: Type.String({ pattern: '^[0-9]{1,5}(,[0-9]{1,5})*$', maxLength: 6000, description: 'Comma-separated part numbers, e.g. 1,2,3' }),
  },
  { additionalProperties: true },
);

const CompleteBody = Type.Object(
  {
    parts: Type.Array(
      Type.Object(
        { PartNumber: Type.Integer({ minimum: 1, maximum: 10_000 }), ETag: Type.String({ minLength: 1, maxLength: 256 }) },
        { additionalProperties: true },
      ),
      { minItems: 1, maxItems: 10_000 },
    ),
  },
  { additionalProperties: true },
);

const ParamsQuery = Type.Object(
  {
    type: Type.String({ description: 'MIME type of the file', maxLength: 255 }),
    filename: Type.Optional(Type.String({ description: 'Original file name; bookkeeping only', maxLength: 255 })),
    size: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'Ours: exact size in bytes, signed into the URL' })),
  },
  { additionalProperties: true },
);

const ParamsResponse = Type.Object({
  method: Type.Literal('PUT'),
  url: Type.String(),
  fields: Type.Object({}),
  headers: Type.Object({ 'content-type': Type.String() }),
  key: Type.String(),
  max_bytes: Type.Integer(),
  expires: Type.Integer(),
});

export interface MultipartRouteOptions {
  apiKeys: ApiKeys;
  uploads: Uploads;
  multipart: MultipartUploads;
  /** The presign budget per user and minute; each creating route (create, params) counts it in its own window. */
  presignsPerMinute: number;
  /** Lifetime of an upload URL, answered as `expires` by `/s3/params`. */
  urlTtlSeconds: number;
}

export const multipartRoutes: FastifyPluginAsyncTypebox<MultipartRouteOptions> = async (app, { apiKeys, uploads, multipart, presignsPerMinute, urlTtlSeconds }) => {
  const auth = requireScope(apiKeys, DEFAULT_SCOPE);
  // The presign route's limit (src/http/routes/presign.ts), for the routes that create an upload.
  const rateLimit = (what: string) => ({
    max: presignsPerMinute,
    timeWindow: 60_000,
    hook: 'preValidation' as const,
    keyGenerator: (request: Parameters<typeof principalOf>[0]) => principalOf(request).userId,
    errorResponseBuilder: (_request: unknown, context: { max: number; after: string; ttl: number }) =>
      rateLimited(`Too many ${what}: at most ${context.max} per minute per user; retry in ${context.after}`, context.ttl / 1000),
  });

  app.post(
    '/api/s3/multipart',
    {
      schema: {
        summary: 'Create a multipart upload of a reference (Uppy Companion protocol)',
        security: [{ bearer: [] }],
        body: CreateBody,
        response: { 200: CreateResponse, ...errorResponses, 429: ErrorSchema },
      },
      onRequest: auth,
      config: { rateLimit: rateLimit('multipart uploads created') },
    },
    async (request) => multipart.create(principalOf(request).userId, request.body),
  );

  app.get(
    '/api/s3/multipart/:uploadId',
    {
      schema: {
        summary: 'The parts received so far (for resume)',
        security: [{ bearer: [] }],
        params: UploadIdParams,
        querystring: KeyQuery,
        response: {
          200: Type.Array(Type.Object({ PartNumber: Type.Integer(), Size: Type.Integer(), ETag: Type.String() })),
          ...errorResponses,
          404: ErrorSchema,
        },
      },
      onRequest: auth,
    },
    async (request) => multipart.listParts(principalOf(request).userId, request.query.key, request.params.uploadId),
  );

  // Registered before `/:partNumber`; the router prefers the static segment anyway.
  app.get(
    '/api/s3/multipart/:uploadId/batch',
    {
      schema: {
        summary: 'Upload URLs for several parts',
        security: [{ bearer: [] }],
        params: UploadIdParams,
        querystring: BatchQuery,
        response: { 200: Type.Object({ presignedUrls: Type.Record(Type.String(), Type.String()) }), ...errorResponses, 404: ErrorSchema },
      },
      onRequest: auth,
    },
    async (request) =>
      multipart.signParts(
        principalOf(request).userId,
        request.query.key,
        request.params.uploadId,
        request.query.partNumbers.split(',').map(Number),
      ),
  );

  app.get(
    '/api/s3/multipart/:uploadId/:partNumber',
    {
      schema: {
        summary: 'An upload URL for one part',
        security: [{ bearer: [] }],
        params: PartParams,
        querystring: KeyQuery,
        response: { 200: Type.Object({ url: Type.String(), expires: Type.Integer() }), ...errorResponses, 404: ErrorSchema },
      },
      onRequest: auth,
    },
    async (request) => multipart.signPart(principalOf(request).userId, request.query.key, request.params.uploadId, Number(request.params.partNumber)),
  );

  app.post(
    '/api/s3/multipart/:uploadId/complete',
    {
      schema: {
        summary: 'Complete the upload: the server checks the parts and their total size, then the store assembles the object',
        security: [{ bearer: [] }],
        params: UploadIdParams,
        querystring: KeyQuery,
        body: CompleteBody,
        response: { 200: Type.Object({ location: Type.String(), key: Type.String() }), ...errorResponses, 404: ErrorSchema },
      },
      onRequest: auth,
    },
    async (request) =>
      multipart.complete(
        principalOf(request).userId,
        request.query.key,
        request.params.uploadId,
        request.body.parts.map((p) => ({ partNumber: p.PartNumber, etag: p.ETag })),
      ),
  );

  app.delete(
    '/api/s3/multipart/:uploadId',
    {
      schema: {
        summary: 'Abort the upload: its parts are dropped and its quota freed',
        security: [{ bearer: [] }],
        params: UploadIdParams,
        querystring: KeyQuery,
        response: { 200: Type.Object({}), ...errorResponses, 404: ErrorSchema },
      },
      onRequest: auth,
    },
    async (request) => {
      await multipart.abort(principalOf(request).userId, request.query.key, request.params.uploadId);
      return {};
    },
  );

  app.get(
    '/api/s3/params',
    {
      schema: {
        summary: "Uppy's single-PUT upload parameters: a presign",
        security: [{ bearer: [] }],
        querystring: ParamsQuery,
        response: { 200: ParamsResponse, ...errorResponses, 429: ErrorSchema },
      },
      onRequest: auth,
      config: { rateLimit: rateLimit('upload URLs created through /api/s3/params') },
    },
    async (request) => {
      const { type, filename, size } = request.query;
      const contentLength = size === undefined ? undefined : Number(size);
      if (contentLength !== undefined && !Number.isSafeInteger(contentLength)) throw validationError('querystring.size must be an integer');
      const presigned = await uploads.presign(principalOf(request).userId, {
        kind: 'upload',
        contentType: type,
        ...(filename !== undefined && filename !== '' ? { fileName: filename } : {}),
        ...(contentLength !== undefined ? { contentLength } : {}),
      });
      return {
        method: 'PUT' as const,
        url: presigned.upload_url,
        fields: {},
        headers: { 'content-type': presigned.content_type },
        key: presigned.s3_key,
        max_bytes: presigned.max_bytes,
        expires: urlTtlSeconds,
      };
    },
  );
};
