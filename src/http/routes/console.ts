import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { notFound } from '../../domain/errors.js';
import type { ObjectStore } from '../../storage/object-store.js';

/**
 * Where `npm run build` (scripts/build-browser.mjs) leaves the console: <package>/dist/console.
 * This file is src/http/routes/console.ts under vitest and dist/http/routes/console.js when
 * built; three levels up is the package either way.
 */
export const CONSOLE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'dist', 'console');

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

interface Asset {
  body: Buffer;
  contentType: string;
  etag: string;
}

/**
 * The page's policy: its own script and style only (no inline script), and network and media
 * only to this origin and the store's, where uploads are PUT and `video_url` points (on S3 another
 * origin; on the disk store the public URL's, normally this one). Images also from blob: and
 * data: (previews of the files picked).
 */
export function consoleCsp(storeOrigin: string | null): string {
  const ownAndStore = storeOrigin ? `'self' ${storeOrigin}` : `'self'`;
  return [
    `default-src 'none'`,
    `script-src 'self'`,
    `style-src 'self'`,
    `img-src 'self' blob: data:`,
    `media-src ${ownAndStore}`,
    `connect-src ${ownAndStore}`,
    `base-uri 'none'`,
    `form-action 'none'`,
    `frame-ancestors 'none'`,
  ].join('; ');
}

/** The origin of the URLs the store hands out: signing one is local work, no request is made. */
async function storeOriginOf(store: ObjectStore): Promise<string> {
  return new URL(await store.presignGet('keyframe-console/origin', 60)).origin;
}

/** The built files, read once; null when the console was not built. */
function readAssets(dir: string): Map<string, Asset> | null {
  let names: string[];
  try {
    names = readdirSync(dir).filter((name) => CONTENT_TYPES[path.extname(name)] !== undefined);
  } catch {
    return null;
  }
  if (!names.includes('index.html')) return null;
  return new Map(
    names.map((name) => {
      const body = readFileSync(path.join(dir, name));
      const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
      return [name, { body, contentType: CONTENT_TYPES[path.extname(name)]!, etag }];
    }),
  );
}

/**
 * The browser console at /console (docs/api.md, "Browser console"): the files of dist/console,
 * read at start-up. Registered only when the console is on (KEYFRAME_CONSOLE); off, /console is
 * an unknown route like any other.
 */
export const consoleRoutes: FastifyPluginAsync<{ store: ObjectStore; dir?: string }> = async (app, { store, dir = CONSOLE_DIR }) => {
  const assets = readAssets(dir);
  // The path goes to the operator's log, not to whoever asks for /console.
  if (!assets) app.log.warn({ dir }, 'the console is not built: /console answers 404 (npm run build builds it)');
  // On the disk store too: its URLs carry the public URL's origin, which is this one unless the
  // page is reached at another address than KEYFRAME_PUBLIC_URL.
  const csp = consoleCsp(await storeOriginOf(store));

  const send = (request: FastifyRequest, reply: FastifyReply, name: string) => {
    if (!assets) throw notFound('The console is not built (no dist/console): run npm run build');
    const asset = assets.get(name);
    if (!asset) throw notFound('No such file of the console');
    reply
      .header('content-security-policy', csp)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      // Revalidated on every load (the files are not content-hashed); an unchanged file costs a 304.
      .header('cache-control', 'no-cache')
      .header('etag', asset.etag);
    if (request.headers['if-none-match'] === asset.etag) return reply.code(304).send();
    return reply.type(asset.contentType).send(asset.body);
  };

  app.get('/console', { schema: { hide: true } }, (request, reply) => send(request, reply, 'index.html'));
  app.get('/console/', { schema: { hide: true } }, (request, reply) => send(request, reply, 'index.html'));
  app.get<{ Params: { file: string } }>('/console/:file', { schema: { hide: true } }, (request, reply) =>
    send(request, reply, request.params.file),
  );
};
