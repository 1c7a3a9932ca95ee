import type { FastifyServerOptions } from 'fastify';
import type { Config } from '../config.js';

/**
 * pino options for the server. Request lines show the path only: upload and
 * download URLs carry their signature in the query string, and no key,
 * signature or credential may reach a log.
 */
export function loggerOptions(level: Config['logLevel']): FastifyServerOptions['logger'] {
  return {
    level,
    redact: { paths: ['req.headers.authorization', 'headers.authorization', '*.authorization'], censor: '[redacted]' },
    serializers: {
      req: (req: { method: string; url: string; ip?: string }) => ({
        method: req.method,
        path: req.url.split('?', 1)[0],
        ip: req.ip,
      }),
    },
  };
}
