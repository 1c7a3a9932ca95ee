import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config.js';
import { databaseTargetOf, openDatabase, type Db } from './db/database.js';
import { ApiKeys } from './domain/api-keys.js';
import { Uploads } from './domain/uploads.js';
import { UploadQuota } from './domain/usage/upload-quota.js';
import { DISK_RESERVATION_GRACE_MS } from './domain/usage/upload-usage.js';
import { Verifier } from './domain/verification.js';
import { freePort } from './free-port.js';
import { openGenerationPipeline } from './generation-pipeline.js';
import { buildApp } from './http/app.js';
import { loggerOptions } from './http/logging.js';
import { FfprobeMediaProbe } from './media/ffprobe.js';
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
  const db = await openDatabase(databaseTargetOf(config));
  // With PostgreSQL no SQLite file is made; the data dir still holds the disk store, the signing secret
  // and scratch files, so it is the owner's alone either way (SQLite's open does the same).
  fs.mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(config.dataDir, 0o700);
  // Whatever fails after the database opened (the store, the model registry, a port in use)
  // closes what was opened, so a failed start never leaves a pool keeping the process alive.
  let app: FastifyInstance | null = null;
  try {
    // Upload URLs need the real port before the app is built: PORT=0 takes a free one now.
    const port = config.port === 0 ? await freePort(config.host) : config.port;
    const url = `http://${hostForUrl(config.host)}:${port}`;
    const publicUrl = config.publicUrl ?? url;
    const store = await openStore(config, publicUrl);
    // Each reference is probed on a private copy (<dataDir>/tmp/verify, 0700), never through a URL.
    const verifier = new Verifier(db, store, { scratchDir: path.join(config.dataDir, 'tmp', 'verify'), probe: new FfprobeMediaProbe() });
    const pipeline = openGenerationPipeline(config, db, store, verifier, publicUrl);
    app = await buildApp({
      apiKeys: new ApiKeys(db),
      uploads: new Uploads(
        db,
        store,
        config.uploadUrlTtlSeconds,
        new UploadQuota(db, config.limits, {
          // On S3 an object PUT and never verified stays pending: its reservation stands until it is resolved.
          reservationGraceMs: config.storage === 'disk' ? DISK_RESERVATION_GRACE_MS : Infinity,
          urlTtlSeconds: config.uploadUrlTtlSeconds,
        }),
      ),
      limits: config.limits,
      verifier,
      generations: pipeline.generations,
      runnerCallbacks: pipeline.runnerCallbacks,
      store,
      corsOrigins: config.corsOrigins,
      logger: loggerOptions(config.logLevel),
    });
    await app.listen({ host: config.host, port });
    // Jobs start only now: model workers (runner http) call this server back.
    await pipeline.start(app.log);
    const running = app;
    return {
      app: running,
      db,
      store,
      url,
      async close() {
        await pipeline.stop();
        await running.close();
        await db.destroy();
      },
    };
  } catch (err) {
    await app?.close();
    await db.destroy();
    throw err;
  }
}

const hostForUrl = (host: string) => (host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host);

