import { createHash, timingSafeEqual } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ApiError } from '../../domain/errors.js';
import type { MetricsExposition } from '../../metrics/metrics-listener.js';
import { ErrorBody } from '../../contract/errors.js';

export interface MetricsRouteOptions {
  metrics: MetricsExposition;
  /** The Bearer token GET /metrics requires (`KEYFRAME_METRICS_TOKEN`); null: the API port has no /metrics (404). */
  token: string | null;
}

const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();

/**
 * Whether an Authorization header carries `Bearer <token>`. Compared in constant time over
 * SHA-256 digests: equal lengths whatever was sent, so neither the token's bytes nor its
 * length leak through timing.
 */
export function bearerMatches(authorization: string | undefined, token: string): boolean {
  const match = /^Bearer +(\S+) *$/i.exec(authorization ?? '');
  const given = match?.[1] ?? '';
  return timingSafeEqual(digest(given), digest(token)) && given.length > 0;
}

/**
 * GET /metrics on the API port, for a Prometheus scraper holding the metrics token (not an API
 * key: no user may read the installation's metrics). Absent without a token configured; the
 * unauthenticated listener (`KEYFRAME_METRICS_LISTEN`, src/metrics/metrics-listener.ts) is the other way.
 */
export const metricsRoutes: FastifyPluginAsyncTypebox<MetricsRouteOptions> = async (app, { metrics, token }) => {
  if (token === null) return;
  app.get(
    '/metrics',
    {
      schema: {
        summary: 'Prometheus metrics of this process (requires KEYFRAME_METRICS_TOKEN, not an API key)',
        description:
          'The text exposition format: HTTP requests, presigns, uploads, verification, generations, webhooks, the queue depth and process metrics. ' +
          'Present only when KEYFRAME_METRICS_TOKEN is set; the Bearer token is that setting. See docs/deploy.md, "Metrics".',
        operationId: 'metrics',
        tags: ['operations'],
        security: [{ bearer: [] }],
        response: {
          200: {
            description: 'Prometheus text exposition format 0.0.4',
            content: { 'text/plain': { schema: Type.String() } },
          },
          401: ErrorBody,
        },
      },
    },
    async (request, reply) => {
      if (!bearerMatches(request.headers.authorization, token)) throw new ApiError('unauthorized', 'Invalid or missing metrics token');
      const body = await metrics.render();
      return reply.header('content-type', metrics.contentType).header('cache-control', 'no-store').send(body);
    },
  );
};
