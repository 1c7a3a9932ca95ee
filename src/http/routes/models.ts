import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { errorResponses } from '../../contract/errors.js';
import { ModelList } from '../../contract/models.js';
import { DEFAULT_SCOPE, type ApiKeys } from '../../domain/api-keys.js';
import { modelCatalogue } from '../../domain/generations/model-catalogue.js';
import type { ModelRegistry } from '../../domain/generations/model-registry.js';
import { requireScope } from '../auth.js';

/** Ours: the models of the registry and what each accepts, for forms and clients (the console's model select). */
export const modelRoutes: FastifyPluginAsyncTypebox<{ apiKeys: ApiKeys; models: ModelRegistry }> = async (app, { apiKeys, models }) => {
  // The registry is read once at start-up, so the answer is too.
  const catalogue = modelCatalogue(models);
  app.get(
    '/api/models',
    {
      schema: {
        summary: 'List Models: the models this installation renders with, and what each accepts',
        operationId: 'listModels',
        tags: ['models'],
        security: [{ bearer: [] }],
        response: { 200: ModelList, ...errorResponses },
      },
      onRequest: requireScope(apiKeys, DEFAULT_SCOPE),
    },
    async () => catalogue,
  );
};
