import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ErrorBody, errorResponses, UploadStatusQuery, UploadStatusResponse } from '../../contract/index.js';
import { DEFAULT_SCOPE, type ApiKeys } from '../../domain/api-keys.js';
import { notFound } from '../../domain/errors.js';
import type { Verifier } from '../../domain/verification.js';
import { principalOf, requireScope } from '../auth.js';

/** Ours: where one of the caller's uploads stands, verifying it when its object has arrived. */
export const uploadStatusRoutes: FastifyPluginAsyncTypebox<{ apiKeys: ApiKeys; verifier: Verifier }> = async (app, { apiKeys, verifier }) => {
  app.get(
    '/api/uploads/status',
    {
      schema: {
        operationId: 'getUploadStatus',
        summary: 'Status of an uploaded reference; verifies it once its object has arrived',
        tags: ['uploads'],
        security: [{ bearer: [] }],
        querystring: UploadStatusQuery,
        response: { 200: UploadStatusResponse, ...errorResponses, 404: ErrorBody },
      },
      onRequest: requireScope(apiKeys, DEFAULT_SCOPE),
    },
    async (request) => {
      const status = await verifier.status(principalOf(request).userId, request.query.key);
      // Another user's key, a missing one and a malformed one get the same answer.
      if (!status) throw notFound('Upload not found');
      return status;
    },
  );
};
