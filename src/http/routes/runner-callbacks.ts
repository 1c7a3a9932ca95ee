import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ErrorBody, GenerationIdParams, RunnerCallbackBody } from '../../contract/index.js';
import { ApiError } from '../../domain/errors.js';
import { CALLBACK_SIGNATURE_HEADER, type RunnerCallbacks } from '../../domain/generations/runner.js';
import { documentedAs } from '../openapi.js';

/**
 * Ours: model workers (runner `http`) report a finished job here. The call is
 * authenticated by an HMAC of the raw body with the job's own secret, not by
 * an API key, so the body is kept as the exact text that was signed. Any API
 * node answers for a job run by any worker: the pending callbacks are in the
 * database (src/runners/http/callback-ledger.ts).
 */
export const runnerCallbackRoutes: FastifyPluginAsyncTypebox<{ callbacks: RunnerCallbacks }> = async (app, { callbacks }) => {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: 64 * 1024 }, (_request, body, done) => done(null, body));

  app.post(
    '/api/generations/:id/callback',
    {
      schema: { params: GenerationIdParams },
      // Documentation only: the body is the signed text, parsed by the domain, never by a schema.
      config: documentedAs({
        operationId: 'runnerCallback',
        summary: "Ours: a model worker (runner `http`) reports a job's end, signed with the job run's secret",
        description: 'Called by model workers, not by API clients: the `callbackUrl` of a job (docs/generations.md, "http"). The signature is single-use.',
        tags: ['generations'],
        security: [{ runnerSignature: [] }],
        params: GenerationIdParams,
        body: RunnerCallbackBody,
        response: {
          204: { description: 'Accepted', type: 'null' },
          400: ErrorBody,
          401: { ...ErrorBody, description: '`unauthorized`: a bad signature, or the callback of an earlier run of the job' },
          404: { ...ErrorBody, description: '`not_found`: no job with this id awaits a callback' },
          500: { ...ErrorBody, description: '`server_error`: this node cannot verify the callback; the job still waits, retry' },
        },
      }),
    },
    async (request, reply) => {
      const header = request.headers[CALLBACK_SIGNATURE_HEADER];
      const signature = Array.isArray(header) ? header[0] : header;
      const outcome = await callbacks.accept(request.params.id, typeof request.body === 'string' ? request.body : '', signature);
      switch (outcome) {
        case 'accepted':
          return reply.code(204).send();
        case 'unknown_job':
          throw new ApiError('not_found', 'No running job with this id awaits a callback');
        case 'bad_signature':
          throw new ApiError('unauthorized', 'Invalid callback signature');
        case 'malformed':
          throw new ApiError('validation_error', 'Callback body must be JSON {"status":"completed"} or {"status":"failed","error":"..."}');
        case 'unverifiable':
          // A 5xx, not a 404: the job still waits, and a retry may reach a node configured alike.
          throw new ApiError('server_error', 'This server cannot verify callbacks for this job (a configuration error); retry later');
      }
    },
  );
};
