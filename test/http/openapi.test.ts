import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv } from 'ajv';
import formatsModule from 'ajv-formats';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openApiPath, OPENAPI_TAGS, registerOpenApi, servedRoutes } from '../../src/http/openapi.js';
import { waitForGeneration } from '../helpers/generations.js';
import { presignAndPut, readFixture } from '../helpers/media-fixtures.js';
import { rgwForTests, startServerOn } from '../helpers/rgw.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

type Operation = { operationId?: string; summary?: string; tags?: string[]; responses?: Record<string, { content?: Record<string, { schema?: unknown }> }> };
type Document = { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, unknown> } };

/** Pages, not API operations: the document itself, its reference page and the console. */
const NOT_API = [/^\/openapi\.json$/, /^\/docs(\/|$)/, /^\/console(\/|$)/];

/**
 * What `app` serves that `doc` leaves out. A route is documented (its path and method are in the
 * document), or a page of NOT_API, or a hidden route on a documented path (the 405 answers of its
 * other methods). HEAD is the one Fastify derives from every GET, documented only where it is an
 * operation of its own (the disk store's objects).
 */
function undocumentedRoutes(app: FastifyInstance, doc: Document): string[] {
  const routes = servedRoutes(app);
  const gets = new Set(routes.filter((r) => r.method === 'GET').map((r) => r.url));
  return routes
    .filter((route) => {
      const path = doc.paths[openApiPath(route.url)];
      if (route.method === 'HEAD' && gets.has(route.url)) return false;
      if (NOT_API.some((page) => page.test(route.url))) return false;
      if (route.hidden) return path === undefined;
      return path?.[route.method.toLowerCase()] === undefined;
    })
    .map((route) => `${route.method} ${route.url}${route.hidden ? ' (hidden)' : ''}`);
}

const rgw = await rgwForTests('OpenAPI suite (S3 store)');

/** Fails, printing the validator's errors, unless `document` is a valid OpenAPI 3.0 document. */
async function expectValidOpenApi(document: unknown): Promise<void> {
  const validator = new Validator();
  const result = await validator.validate(structuredClone(document) as Record<string, unknown>);
  if (!result.valid) console.error('OpenAPI document errors:\n' + JSON.stringify(result.errors, null, 2));
  expect(result.errors).toBeUndefined();
  expect(result.valid).toBe(true);
  expect(validator.version).toBe('3.0');
}

let server: TestServer;
let doc: Document;
let key: string;
/** The document as a JSON Schema registry: an answer is checked against the schema the document gives for it. */
const ajv = new Ajv({ strict: false, allErrors: true });
// A CommonJS module, whose plugin is also its `default`.
formatsModule.default(ajv);

beforeAll(async () => {
  // With a metrics token, so that /metrics is served (and must be documented) too.
  server = await startTestServer({ KEYFRAME_METRICS_TOKEN: 'openapi-test-metrics-token-0123456789' });
  key = (await server.createKey('alice')).key;
  const res = await fetch(`${server.url}/openapi.json`);
  expect(res.status).toBe(200);
  doc = (await res.json()) as Document;
  ajv.addSchema(doc, 'openapi.json');
});

afterAll(async () => {
  await server?.stop();
});

/** Fails with Ajv's errors unless `body` is what the document says `method path` answers with `status`. */
function expectDocumented(method: string, path: string, status: number, body: unknown): void {
  const pointer = ['paths', path, method, 'responses', String(status), 'content', 'application/json', 'schema']
    .map((segment) => encodeURIComponent(segment.replace(/~/g, '~0').replace(/\//g, '~1')))
    .join('/');
  expect(doc.paths[path]?.[method]?.responses?.[String(status)]?.content?.['application/json']?.schema, `${method} ${path} ${status}`).toBeDefined();
  const validate = ajv.getSchema(`openapi.json#/${pointer}`) ?? ajv.compile({ $ref: `openapi.json#/${pointer}` });
  const valid = validate(body);
  expect(valid ? [] : validate.errors, `${method} ${path} ${status}: ${JSON.stringify(body)}`).toEqual([]);
}

describe('GET /openapi.json', () => {
  it('is a valid OpenAPI document', async () => {
    await expectValidOpenApi(doc);
  });

  it('documents every route the app serves', () => {
    const served = servedRoutes(server.app).map((r) => `${r.method} ${r.url}`);
    // The record is the app's routes, not an empty list that would pass anything.
    expect(served).toEqual(expect.arrayContaining(['POST /api/s3/presign-upload', 'GET /api/models', 'GET /metrics', 'PUT /keyframe/*', 'GET /docs/json']));
    expect(undocumentedRoutes(server.app, doc)).toEqual([]);
  });

  it('the route check finds an undocumented route, hidden or not', async () => {
    const app = Fastify();
    await registerOpenApi(app, { docs: false });
    app.get('/api/documented', { schema: { operationId: 'documented', summary: 's', tags: ['uploads'] } }, async () => ({}));
    app.post('/api/documented', { schema: { hide: true } }, async () => ({}));
    app.get('/api/secret', { schema: { hide: true } }, async () => ({}));
    app.delete('/api/forgotten', async () => ({}));
    await app.ready();
    const forgotten = { ...(app.swagger() as unknown as Document) };
    forgotten.paths = { ...forgotten.paths };
    delete forgotten.paths['/api/forgotten'];
    expect(undocumentedRoutes(app, forgotten)).toEqual(['GET /api/secret (hidden)', 'DELETE /api/forgotten']);
    await app.close();
  });

  it('documents the endpoints, Keyframe’s included, each with an id, a summary, a tag and its answers', () => {
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ at: `${method} ${path}`, op })));
    expect(operations.map((o) => o.at).sort()).toEqual(
      [
        'post /api/s3/presign-upload',
        'get /api/uploads/status',
        'post /api/generations',
        'get /api/generations/{id}',
        'post /api/generations/{id}/callback',
        'get /api/models',
        'post /api/s3/multipart',
        'get /api/s3/multipart/{uploadId}',
        'delete /api/s3/multipart/{uploadId}',
        'get /api/s3/multipart/{uploadId}/batch',
        'get /api/s3/multipart/{uploadId}/{partNumber}',
        'post /api/s3/multipart/{uploadId}/complete',
        'get /api/s3/params',
        'put /keyframe/{*}',
        'get /keyframe/{*}',
        'head /keyframe/{*}',
        'get /healthz',
        'get /readyz',
        'get /metrics',
      ].sort(),
    );
    const tags = OPENAPI_TAGS.map((t) => t.name);
    const ids = new Set<string>();
    for (const { at, op } of operations) {
      expect(op.operationId, at).toMatch(/^[A-Za-z]+$/);
      expect(ids.has(op.operationId!), `${at}: operationId ${op.operationId} twice`).toBe(false);
      ids.add(op.operationId!);
      expect(op.summary, at).toBeTruthy();
      expect(op.tags?.length, at).toBe(1);
      expect(tags, at).toContain(op.tags![0]);
      const statuses = Object.keys(op.responses ?? {});
      expect(statuses.some((s) => s.startsWith('2')), `${at}: a success answer`).toBe(true);
      // Every API error is the envelope; the disk store's objects answer S3's XML instead, and /readyz its own 503.
      for (const status of statuses.filter((s) => Number(s) >= 400)) {
        const json = op.responses![status]!.content?.['application/json']?.schema;
        if (at.includes('/keyframe/') || at === 'get /readyz') continue;
        expect(json, `${at} ${status}`).toEqual({ $ref: '#/components/schemas/Error' });
      }
    }
    expect(Object.keys(doc.components.schemas)).toEqual(
      expect.arrayContaining(['Error', 'PresignResponse', 'UploadStatus', 'MediaInfo', 'CreateGenerationResponse', 'GenerationStatus', 'ModelList']),
    );
  });

  it('documents the runner callback with its signature as a security scheme', () => {
    const callback = doc.paths['/api/generations/{id}/callback']!.post as Operation & { security?: unknown };
    expect(callback.security).toEqual([{ runnerSignature: [] }]);
    expect((doc.components as { securitySchemes?: Record<string, unknown> }).securitySchemes?.runnerSignature).toMatchObject({
      type: 'apiKey',
      in: 'header',
      name: 'x-keyframe-signature',
    });
  });
});

describe.skipIf(rgw.skip)('GET /openapi.json on the S3 store', () => {
  it('is valid, documents every route, and has no object endpoint (the disk store’s only)', async () => {
    const s3 = await startServerOn('s3', rgw, 'openapi');
    try {
      const document = (await (await fetch(`${s3.url}/openapi.json`)).json()) as Document;
      await expectValidOpenApi(document);
      expect(Object.keys(document.paths).filter((p) => p.startsWith('/keyframe'))).toEqual([]);
      expect(servedRoutes(s3.app).length).toBeGreaterThan(20);
      expect(undocumentedRoutes(s3.app, document)).toEqual([]);
    } finally {
      await s3.stop();
    }
  });
});

describe('real answers match the document', () => {
  it('presign, upload status (pending, then verified) and an error', async () => {
    const presigned = await server.api('POST', '/api/s3/presign-upload', { key, body: { kind: 'upload', contentType: 'image/png' } });
    expect(presigned.status).toBe(200);
    expectDocumented('post', '/api/s3/presign-upload', 200, presigned.body);

    const statusOf = () => server.api('GET', `/api/uploads/status?key=${encodeURIComponent(presigned.body.s3_key)}`, { key });
    const pending = await statusOf();
    expect(pending.body.state).toBe('pending');
    expectDocumented('get', '/api/uploads/status', 200, pending.body);

    const put = await fetch(presigned.body.upload_url, { method: 'PUT', headers: { 'content-type': 'image/png' }, body: new Uint8Array(readFixture('sample.png')) });
    expect(put.status).toBe(200);
    const verified = await statusOf();
    expect(verified.body.state).toBe('verified');
    expect(verified.body.media).not.toBeNull();
    expectDocumented('get', '/api/uploads/status', 200, verified.body);

    const refused = await server.api('POST', '/api/s3/presign-upload', { body: { kind: 'upload', contentType: 'image/png' } });
    expect(refused.status).toBe(401);
    expectDocumented('post', '/api/s3/presign-upload', 401, refused.body);
  });

  it('create generation and its status', async () => {
    const { s3_key } = await presignAndPut(server, key, 'image/png', readFixture('sample.png'));
    const created = await server.api('POST', '/api/generations', { key, body: { prompt: 'a quiet sea', modelName: 'keyframe-local', startFrameKey: s3_key } });
    expect(created.status).toBe(200);
    expectDocumented('post', '/api/generations', 200, created.body);

    const id = created.body.generations[0].generation_id;
    const generating = await server.api('GET', `/api/generations/${id}`, { key });
    expect(generating.status).toBe(200);
    expectDocumented('get', '/api/generations/{id}', 200, generating.body);
    const done = await waitForGeneration(server.api, key, id);
    expect(done.body.status).toBe('completed');
    expectDocumented('get', '/api/generations/{id}', 200, done.body);
  });

  it('a document schema refuses an answer that breaks it (the check can fail)', () => {
    expect(() => expectDocumented('post', '/api/s3/presign-upload', 200, { s3_key: 'k', upload_url: 'u', content_type: 'image/png' })).toThrow();
  });
});

describe('/docs', () => {
  it('serves Swagger UI from the package’s own assets', async () => {
    const page = await fetch(`${server.url}/docs`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('swagger-ui-bundle.js');
    // Every asset is the server's own: no absolute URL anywhere in the page.
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
    const bundle = await fetch(`${server.url}/docs/static/swagger-ui-bundle.js`);
    expect(bundle.status).toBe(200);
    await bundle.arrayBuffer();
    const spec = await fetch(`${server.url}/docs/json`);
    expect(await spec.json()).toEqual(doc);
  });

  it('is not found with KEYFRAME_DOCS=false, while /openapi.json stays', async () => {
    const off = await startTestServer({ KEYFRAME_DOCS: 'false' });
    try {
      for (const path of ['/docs', '/docs/', '/docs/json', '/docs/static/swagger-ui-bundle.js']) {
        const res = await off.api('GET', path);
        expect(res.status, path).toBe(404);
        expect(res.body, path).toEqual({ error: 'not_found', message: expect.any(String) });
      }
      expect((await off.api('GET', '/openapi.json')).status).toBe(200);
    } finally {
      await off.stop();
    }
  });
});
