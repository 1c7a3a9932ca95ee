import type { FastifyInstance, FastifySchema, RouteOptions } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TSchema } from '@sinclair/typebox';
import * as contract from '../contract/index.js';
import { CALLBACK_SIGNATURE_HEADER } from '../domain/generations/runner.js';

/**
 * The OpenAPI document (GET /openapi.json) and the API reference (Swagger UI at /docs), both
 * generated from the route schemas, which are the contract's (src/contract): the document
 * cannot say other than what the routes validate and answer. docs/api.md, "API reference".
 */

export interface OpenApiOptions {
  /** Serve Swagger UI at /docs (`KEYFRAME_DOCS`); without it /docs is not found. /openapi.json is always served. */
  docs: boolean;
}

/** A route the app serves, as Fastify registered it. */
export interface ServedRoute {
  method: string;
  url: string;
  /** Left out of the document on purpose (`schema.hide`). */
  hidden: boolean;
}

export const OPENAPI_TAGS = [
  { name: 'uploads', description: 'Presigned uploads of references, and their verification' },
  { name: 'multipart', description: "Large uploads in parts, on Uppy Companion's S3 routes" },
  { name: 'generations', description: 'Videos generated from a prompt and uploaded references' },
  { name: 'models', description: 'The models of this installation and what each accepts' },
  { name: 'operations', description: 'Liveness, readiness and metrics, for operators and their tools' },
];

/** The contract's schemas with an `$id`: each is one named component, referenced wherever a route uses it. */
const NAMED = new Map(
  Object.values(contract as Record<string, unknown>)
    .filter((value): value is TSchema & { $id: string } => isSchema(value) && typeof value.$id === 'string')
    .map((schema) => [schema.$id, schema]),
);

/** What each status answers, in the envelope's codes (src/domain/errors.ts). */
const RESPONSE_DESCRIPTIONS: Record<string, string> = {
  200: 'OK',
  204: 'Accepted; no body',
  400: '`validation_error`: the request is malformed or asks for something not allowed',
  401: '`unauthorized`: no key, an unknown or a revoked one',
  403: '`forbidden`: the key lacks the scope this endpoint needs',
  404: '`not_found`: nothing of the caller’s here (another user’s looks the same)',
  413: '`payload_too_large`',
  429: '`rate_limited`: too many requests; retry after `Retry-After` seconds',
  500: '`server_error`: the details are in the server’s log',
  503: 'Not ready',
};

const recorded = new WeakMap<FastifyInstance, ServedRoute[]>();

/**
 * Registers @fastify/swagger, GET /openapi.json and, when `docs`, Swagger UI at /docs (its
 * assets from the package itself, nothing from a CDN). Call it before any route: it records
 * every route the app serves, so a test can find the ones the document leaves out.
 */
export async function registerOpenApi(app: FastifyInstance, { docs }: OpenApiOptions): Promise<void> {
  const routes: ServedRoute[] = [];
  recorded.set(app, routes);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) {
      routes.push({ method, url: route.url, hidden: (route.schema as { hide?: boolean } | undefined)?.hide === true });
    }
  });

  await app.register(swagger, {
    openapi: {
      info: {
        title: 'Keyframe',
        description: "Prism's Upload Reference API, self-hosted, and Keyframe's additions. Generated from src/contract.",
        version: '0.1.0',
      },
      tags: OPENAPI_TAGS,
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'An API key (`prism_sk_…`)' },
          runnerSignature: {
            type: 'apiKey',
            in: 'header',
            name: CALLBACK_SIGNATURE_HEADER,
            description: '`sha256=<hex HMAC-SHA256 of the exact body bytes>`, keyed with the job run’s `callbackSecret`',
          },
        },
        schemas: Object.fromEntries([...NAMED].map(([id, schema]) => [id, referenceNamed(schema, true)])),
      },
    },
    transform: ({ schema, url }) => ({ schema: schema && referenceNamedIn(schema), url }),
  });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  if (docs) {
    await app.register(swaggerUi, {
      routePrefix: '/docs',
      uiConfig: { docExpansion: 'list', deepLinking: true, defaultModelsExpandDepth: 0 },
    });
  }
}

/** Every route `app` serves (one per method), as registered; empty for an app without registerOpenApi. */
export function servedRoutes(app: FastifyInstance): ServedRoute[] {
  return [...(recorded.get(app) ?? [])];
}

/** The document's path of a route's URL: `/api/generations/:id` is `/api/generations/{id}`, a wildcard `{*}`. */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\*/g, '{*}');
}

/**
 * A route's documentation only: the document shows `schema`, but Fastify neither validates
 * nor serialises with it (route config, read by @fastify/swagger alone). For routes whose
 * bodies are not JSON the route parses (the disk store's objects, signed callbacks) or whose
 * answers are written by hand. `head` documents the HEAD Fastify derives from a GET.
 */
export function documentedAs(schema: FastifySchema, head?: FastifySchema): NonNullable<RouteOptions['config']> {
  return {
    ...(head ? { swagger: { exposeHeadRoute: true } } : {}),
    swaggerTransform: ({ route, url }: { route: RouteOptions; url: string }) => ({
      schema: referenceNamedIn(route.method === 'HEAD' && head ? head : schema),
      url,
    }),
  };
}

/** A route schema whose body and answers use the named components, each answer described. */
function referenceNamedIn(schema: FastifySchema): FastifySchema {
  const out: Record<string, unknown> = { ...schema };
  if (schema.body) out.body = referenceNamed(schema.body);
  if (schema.response) {
    out.response = Object.fromEntries(
      Object.entries(schema.response as Record<string, Record<string, unknown>>).map(([status, answer]) => {
        // A named schema's own description is the component's; the answer's says what the status means.
        const named = typeof answer.$id === 'string' ? NAMED.get(answer.$id) : undefined;
        const own = named && answer.description === named.description ? undefined : answer.description;
        const description = own ?? RESPONSE_DESCRIPTIONS[status];
        return [status, { ...referenceNamed(answer), ...(description === undefined ? {} : { description }) }];
      }),
    );
  }
  return out as FastifySchema;
}

/** `schema` with every named contract schema in it replaced by a reference to its component (but itself, at the top). */
function referenceNamed<T>(schema: T, top = false): T {
  if (Array.isArray(schema)) return schema.map((item: unknown) => referenceNamed(item)) as T;
  if (schema === null || typeof schema !== 'object') return schema;
  const { $id, ...rest } = schema as Record<string, unknown>;
  if (!top && typeof $id === 'string' && NAMED.has($id)) return { $ref: `#/components/schemas/${$id}` } as T;
  const copy = Object.fromEntries(Object.entries(rest).map(([key, value]) => [key, referenceNamed(value)]));
  return ($id === undefined || top ? copy : { $id, ...copy }) as T;
}

function isSchema(value: unknown): value is TSchema {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && ('type' in value || 'anyOf' in value);
}

/** The documentation of /healthz and /readyz, whose answers app.ts writes by hand. */
export const OPERATIONS_DOCS = {
  healthz: documentedAs({
    operationId: 'healthz',
    summary: 'Liveness: the process answers; no key needed',
    tags: ['operations'],
    response: { 200: contract.Health },
  }),
  readyz: documentedAs({
    operationId: 'readyz',
    summary: 'Readiness: the database and the store answer, each within 2 s; no key needed',
    tags: ['operations'],
    response: { 200: contract.Ready, 503: contract.NotReady },
  }),
};
