import type { FastifyInstance } from 'fastify';
import type { Config } from './config.js';
import { openDatabase, type Db } from './db/database.js';
import { ApiKeys } from './domain/api-keys.js';
import { Uploads } from './domain/uploads.js';
import { Verifier } from './domain/verification.js';
import { freePort } from './free-port.js';
import { openGenerationPipeline, type GenerationPipeline } from './generation-pipeline.js';
import { buildApp } from './http/app.js';
import { loggerOptions } from './http/logging.js';
import type { ObjectStore } from './storage/object-store.js';
import { openStore } from './storage/open-store.js';

export interface RunningServer {
  app: FastifyInstance;
  db: Db;
  /** The object store the server uses (tests inspect objects through it). */
  store: ObjectStore;
  /** The base URL the server answers at. */
  url: string;
  close(): Promise<void>;
}

/** Opens the database and store the config names, and listens. */
export async function startServer(config: Config): Promise<RunningServer> {
  const db = await openDatabase(config.dataDir);
  // Upload URLs need the real port before the app is built: PORT=0 takes a free one now.
  const port = config.port === 0 ? await freePort(config.host) : config.port;
  const url = `http://${hostForUrl(config.host)}:${port}`;
  const publicUrl = config.publicUrl ?? url;
  const store = await openStore(config, publicUrl).catch(async (err: unknown) => {
    await db.destroy();
    throw err;
  });
  const verifier = new Verifier(db, store);
  let pipeline: GenerationPipeline;
  try {
    pipeline = openGenerationPipeline(config, db, store, verifier, publicUrl);
  } catch (err) {
    await db.destroy();
    throw err;
  }
  const app = await buildApp({
    apiKeys: new ApiKeys(db),
    uploads: new Uploads(db, store, config.uploadUrlTtlSeconds),
    verifier,
    generations: pipeline.generations,
    runnerCallbacks: pipeline.runnerCallbacks,
    store,
    corsOrigins: config.corsOrigins,
    logger: loggerOptions(config.logLevel),
  });
  await app.listen({ host: config.host, port });
  // Jobs start only now: the local runner reads references through this server's URLs.
  await pipeline.start(app.log).catch(async (err: unknown) => {
    await app.close();
    await db.destroy();
    throw err;
  });
  return {
    app,
    db,
    store,
    url,
    async close() {
      await pipeline.stop();
      await app.close();
      await db.destroy();
    },
  };
}

const hostForUrl = (host: string) => (host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host);

