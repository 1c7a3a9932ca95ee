import type { FastifyInstance } from 'fastify';
import { ApiError } from '../domain/errors.js';

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

/** Answers 405 in the error envelope for the methods `url` does not serve. */
export function methodNotAllowed(app: FastifyInstance, url: string, allowed: readonly string[]): void {
  const others = METHODS.filter((m) => !allowed.includes(m) && !(m === 'GET' && allowed.includes('HEAD')));
  app.route({
    method: [...others],
    url,
    schema: { hide: true },
    handler: async (_request, reply) => {
      reply.header('allow', allowed.join(', '));
      throw new ApiError('method_not_allowed', `Method not allowed; use ${allowed.join(' or ')}`);
    },
  });
}
