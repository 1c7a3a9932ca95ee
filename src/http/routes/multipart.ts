import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  AbortMultipartResponse,
  BatchPartsQuery,
  BatchPartsResponse,
  CompleteMultipartRequest,
  CompleteMultipartResponse,
  CreateMultipartRequest,
  CreateMultipartResponse,
  ErrorBody,
  errorResponses,
  ListPartsResponse,
  MultipartKeyQuery,
  MultipartUploadParams,
  PartParams,
  SignedPart,
  UploadParamsQuery,
  UploadParamsResponse,
} from '../../contract/index.js';
import { DEFAULT_SCOPE, type ApiKeys } from '../../domain/api-keys.js';
import { rateLimited, validationError } from '../../domain/errors.js';
import type { MultipartUploads } from '../../domain/multipart-uploads.js';
import type { Uploads } from '../../domain/uploads.js';
import { principalOf, requireScope } from '../auth.js';

/**
 * Uppy Companion's S3 routes (`@uppy/aws-s3` with `endpoint: '<origin>/api'` and an
 * `Authorization` header), on Keyframe's auth, error envelope and upload records:
 * a multipart upload in parts straight to the store, completed by the server after
 * it checked the total size (src/domain/multipart-uploads.ts), and `/s3/params` for
 * Uppy's single PUT, which is a presign. docs/api.md, "Multipart uploads".
 */

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
        operationId: 'createMultipartUpload',
        summary: 'Create a multipart upload of a reference (Uppy Companion protocol)',
        tags: ['multipart'],
        security: [{ bearer: [] }],
        body: CreateMultipartRequest,
        response: { 200: CreateMultipartResponse, ...errorResponses, 429: ErrorBody },
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
        operationId: 'listMultipartParts',
        summary: 'The parts received so far (for resume)',
        tags: ['multipart'],
        security: [{ bearer: [] }],
        params: MultipartUploadParams,
        querystring: MultipartKeyQuery,
        response: { 200: ListPartsResponse, ...errorResponses, 404: ErrorBody },
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
        operationId: 'signMultipartParts',
        summary: 'Upload URLs for several parts',
        tags: ['multipart'],
        security: [{ bearer: [] }],
        params: MultipartUploadParams,
        querystring: BatchPartsQuery,
        response: { 200: BatchPartsResponse, ...errorResponses, 404: ErrorBody },
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
        operationId: 'signMultipartPart',
        summary: 'An upload URL for one part',
        tags: ['multipart'],
        security: [{ bearer: [] }],
        params: PartParams,
        querystring: MultipartKeyQuery,
        response: { 200: SignedPart, ...errorResponses, 404: ErrorBody },
      },
      onRequest: auth,
    },
    async (request) => multipart.signPart(principalOf(request).userId, request.query.key, request.params.uploadId, Number(request.params.partNumber)),
  );

  app.post(
    '/api/s3/multipart/:uploadId/complete',
    {
      schema: {
        operationId: 'completeMultipartUpload',
        summary: 'Complete the upload: the server checks the parts and their total size, then the store assembles the object',
        tags: ['multipart'],
        security: [{ bearer: [] }],
        params: MultipartUploadParams,
        querystring: MultipartKeyQuery,
        body: CompleteMultipartRequest,
        response: { 200: CompleteMultipartResponse, ...errorResponses, 404: ErrorBody },
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
        operationId: 'abortMultipartUpload',
        summary: 'Abort the upload: its parts are dropped and its quota freed',
        tags: ['multipart'],
        security: [{ bearer: [] }],
        params: MultipartUploadParams,
        querystring: MultipartKeyQuery,
        response: { 200: AbortMultipartResponse, ...errorResponses, 404: ErrorBody },
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
        operationId: 'getUploadParams',
        summary: "Uppy's single-PUT upload parameters: a presign",
        tags: ['multipart'],
        security: [{ bearer: [] }],
        querystring: UploadParamsQuery,
        response: { 200: UploadParamsResponse, ...errorResponses, 429: ErrorBody },
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
      }, 'params');
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
