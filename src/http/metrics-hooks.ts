import type { FastifyInstance } from 'fastify';

/** What the HTTP layer records of each answered request (src/metrics/prometheus.ts implements it). */
export interface RequestMetrics {
  observeRequest(method: string, route: string, status: number, seconds: number): void;
}

/** The route label of a request that matched no route (404s): one value, whatever the path was. */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * Counts and times every answered request in an onResponse hook, labelled with the route
 * template (`/api/generations/:id`), never the path: label cardinality stays bounded whatever
 * clients request. Register it on the root instance before the routes.
 */
export function recordRequestMetrics(app: FastifyInstance, metrics: RequestMetrics): void {
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? UNMATCHED_ROUTE;
    metrics.observeRequest(request.method, route, reply.statusCode, reply.elapsedTime / 1000);
  });
}
