import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ErrorBody, errorResponses, PresignRequest, PresignResponse } from '../../contract/index.js';
import { DEFAULT_SCOPE, type ApiKeys } from '../../domain/api-keys.js';
import type { Uploads } from '../../domain/uploads.js';
import { rateLimited } from '../../domain/errors.js';
import { principalOf, requireScope } from '../auth.js';

export interface PresignRouteOptions {
  apiKeys: ApiKeys;
  uploads: Uploads;
  /** Presigns one user may make per minute (all of their keys together). */
  presignsPerMinute: number;
}

export const presignRoutes: FastifyPluginAsyncTypebox<PresignRouteOptions> = async (app, { apiKeys, uploads, presignsPerMinute }) => {
  app.post(
    '/api/s3/presign-upload',
    {
      schema: {
        operationId: 'presignUpload',
        summary: 'Create a presigned upload URL for an image, video or audio reference',
        tags: ['uploads'],
        security: [{ bearer: [] }],
        body: PresignRequest,
        response: { 200: PresignResponse, ...errorResponses, 429: ErrorBody },
      },
      onRequest: requireScope(apiKeys, DEFAULT_SCOPE),
      config: {
        // @fastify/rate-limit (registered in app.ts, global: false), per user: the key is the
        // principal that the onRequest auth hook set, so the check runs in a later hook.
        // preValidation, not preHandler: a request with an invalid body counts too.
        // Per user, not per key: per-key budgets would let a user multiply them by minting keys.
        rateLimit: {
          max: presignsPerMinute,
          timeWindow: 60_000,
          hook: 'preValidation',
          keyGenerator: (request) => principalOf(request).userId,
          // Thrown by the plugin; src/http/errors.ts turns it into the envelope with Retry-After.
          errorResponseBuilder: (_request, context) =>
            rateLimited(`Too many presigns: at most ${context.max} per minute per user; retry in ${context.after}`, context.ttl / 1000),
        },
      },
    },
    async (request) => uploads.presign(principalOf(request).userId, request.body),
  );
};
