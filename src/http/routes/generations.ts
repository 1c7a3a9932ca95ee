import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { CreateGenerationRequest, CreateGenerationResponse, ErrorBody, errorResponses, GenerationIdParams, GenerationStatus } from '../../contract/index.js';
import { DEFAULT_SCOPE, type ApiKeys } from '../../domain/api-keys.js';
import type { Generations } from '../../domain/generations/generations.js';
import { principalOf, requireScope } from '../auth.js';

export const generationRoutes: FastifyPluginAsyncTypebox<{ apiKeys: ApiKeys; generations: Generations }> = async (app, { apiKeys, generations }) => {
  const auth = requireScope(apiKeys, DEFAULT_SCOPE);

  app.post(
    '/api/generations',
    {
      schema: {
        operationId: 'createGeneration',
        summary: 'Create Generation: queue videos made from a prompt and uploaded references',
        tags: ['generations'],
        security: [{ bearer: [] }],
        body: CreateGenerationRequest,
        response: { 200: CreateGenerationResponse, ...errorResponses, 404: ErrorBody, 429: ErrorBody },
      },
      onRequest: auth,
    },
    async (request) => generations.create(principalOf(request).userId, request.body),
  );

  app.get(
    '/api/generations/:id',
    {
      schema: {
        operationId: 'getGenerationStatus',
        summary: 'Get Generation Status',
        tags: ['generations'],
        security: [{ bearer: [] }],
        params: GenerationIdParams,
        response: { 200: GenerationStatus, ...errorResponses, 404: ErrorBody },
      },
      onRequest: auth,
    },
    async (request) => generations.status(principalOf(request).userId, request.params.id),
  );
};
