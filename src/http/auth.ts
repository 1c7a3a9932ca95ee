import type { FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import { ApiError } from '../domain/errors.js';
import type { ApiKeys } from '../domain/api-keys.js';
import type { Principal } from '../domain/principal.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** An onRequest hook admitting only requests whose Bearer key is live and carries `scope`. */
export function requireScope(apiKeys: ApiKeys, scope: string): onRequestAsyncHookHandler {
  return async (request: FastifyRequest) => {
    const principal = await apiKeys.authenticate(request.headers.authorization);
    if (!principal.scopes.includes(scope)) {
      throw new ApiError('forbidden', `API key lacks the ${scope} scope`);
    }
    request.principal = principal;
  };
}

/** The caller of a route guarded by `requireScope`. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new Error('route is missing requireScope');
  return request.principal;
}
