import { rm } from 'node:fs/promises';
import { dataDirWithKey, postgresWithKey } from './lib/keys.js';
import { BENCH_POOL_SIZE, keyframePostgresEnv } from './lib/postgres.js';
import { loadPresign, loadStatus, type LoadFigures } from './lib/presign-load.js';
import { measureWhileAlive, startKeyframe, startPeer, type ChildServer } from './lib/processes.js';
import { summarise, type Summary } from './lib/stats.js';
import { okRps, verifiedUpload } from './lib/uploads.js';

type Side = { rps: Summary; p50: Summary; p99: Summary; errors: number };

export interface PresignRow {
  connections: number;
  keyframe: Side;
  /** Keyframe with KEYFRAME_STORAGE=s3 (Ceph RGW), when RGW is up. */
  keyframeS3: Side | null;
  s3VsBare: Summary | null;
  s3VsSdk: Summary | null;
  bare: { rps: Summary; p50: Summary; p99: Summary; errors: number };
  sdk: { rps: Summary; p50: Summary; p99: Summary; errors: number };
  /** Per-round ratios keyframe/bare and keyframe/sdk (req/s). */
  vsBare: Summary;
  vsSdk: Summary;
  /** Keyframe on PostgreSQL and the usual way on PostgreSQL, when PostgreSQL is up. */
  postgres: {
    keyframe: Side;
    sdk: Side;
    /** Per round: Keyframe on PostgreSQL / the usual way on PostgreSQL, and / Keyframe on SQLite. */
    vsSdk: Summary;
    vsSqlite: Summary;
  } | null;
}

/** GET /api/uploads/status of a verified upload, Keyframe on SQLite and on PostgreSQL, same rounds. */
export interface StatusRow {
  connections: number;
  sqlite: Side;
  postgres: Side;
  /** Per round: PostgreSQL / SQLite. */
  ratio: Summary;
}

export interface PresignOptions {
  connections: number[];
  rounds: number;
  seconds: number;
  /** Environment for a second Keyframe in S3 mode; null when no S3 store is reachable. */
  s3Env: Record<string, string> | null;
  /** The PostgreSQL admin URL scratch databases are made with; null when PostgreSQL is not reachable. */
  postgresAdminUrl: string | null;
  /** Connections of the status loads (both dialects). */
  statusConnections: number;
  log: (line: string) => void;
}

/**
 * Presign throughput: Keyframe (`keyframe serve`, disk store), the bare Fastify
 * route and the SDK-plus-insert build, each in its own process, loaded one at
 * a time and interleaved round by round so that drift hits all three alike.
 * With PostgreSQL up, Keyframe on PostgreSQL and the usual way on PostgreSQL
 * join the same rounds, and each round ends with status reads of a verified
 * upload on Keyframe on SQLite and on PostgreSQL.
 */
export async function benchPresign(
  options: PresignOptions,
): Promise<{ rows: PresignRow[]; status: StatusRow | null; responseBytes: number }> {
  const kf = await dataDirWithKey('kf');
  const sdk = await dataDirWithKey('sdk');
  const servers: ChildServer[] = [];
  const cleanup = [kf.dataDir, sdk.dataDir];
  const databases: { drop(): Promise<void> }[] = [];
  try {
    const keyframe = await startKeyframe('keyframe', kf.dataDir);
    servers.push(keyframe);
    const sample = await fetch(keyframe.url + '/api/s3/presign-upload', {
      method: 'POST',
      headers: { authorization: `Bearer ${kf.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'upload', contentType: 'image/png', fileName: 'reference.png' }),
    });
    const responseBytes = (await sample.text()).length;
    if (sample.status !== 200) throw new Error(`keyframe presign answered ${sample.status}`);
    const bare = await startPeer('bare fastify', 'bare-fastify.ts', { BODY_BYTES: String(responseBytes) });
    servers.push(bare);
    const sdkServer = await startPeer('sdk+insert', 'sdk-presign.ts', { KEYFRAME_DATA_DIR: sdk.dataDir });
    servers.push(sdkServer);

    const targets = [
      { id: 'bare', url: bare.url, key: 'unused' },
      { id: 'keyframe', url: keyframe.url, key: kf.key },
      { id: 'sdk', url: sdkServer.url, key: sdk.key },
    ];
    if (options.s3Env) {
      const s3 = await dataDirWithKey('kf-s3');
      cleanup.push(s3.dataDir);
      const keyframeS3 = await startKeyframe('keyframe (s3)', s3.dataDir, options.s3Env);
      servers.push(keyframeS3);
      targets.push({ id: 'keyframeS3', url: keyframeS3.url, key: s3.key });
    }
    // Status reads: one verified upload per server, read back at statusConnections.
    const statusTargets: { id: string; url: string; key: string; s3Key: string }[] = [];
    if (options.postgresAdminUrl) {
      const kfPg = await postgresWithKey('kf', options.postgresAdminUrl);
      databases.push(kfPg.database);
      cleanup.push(kfPg.dataDir);
      const sdkPg = await postgresWithKey('sdk', options.postgresAdminUrl);
      databases.push(sdkPg.database);
      cleanup.push(sdkPg.dataDir);
      const keyframePg = await startKeyframe('keyframe (postgres)', kfPg.dataDir, keyframePostgresEnv(kfPg.database.url));
      servers.push(keyframePg);
      const sdkPgServer = await startPeer('sdk+insert (postgres)', 'sdk-presign-pg.ts', {
        DATABASE_URL: sdkPg.database.url,
        POOL_SIZE: String(BENCH_POOL_SIZE),
      });
      servers.push(sdkPgServer);
      targets.push({ id: 'keyframePg', url: keyframePg.url, key: kfPg.key }, { id: 'sdkPg', url: sdkPgServer.url, key: sdkPg.key });
      statusTargets.push(
        { id: 'sqlite', url: keyframe.url, key: kf.key, s3Key: await verifiedUpload(keyframe.url, kf.key) },
        { id: 'postgres', url: keyframePg.url, key: kfPg.key, s3Key: await verifiedUpload(keyframePg.url, kfPg.key) },
      );
    }
    // Keyframe on SQLite and on PostgreSQL loaded back to back, so that their per-round ratio sees the same moment.
    const order = ['bare', 'keyframe', 'keyframePg', 'sdk', 'sdkPg', 'keyframeS3'];
    targets.sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
    for (const t of statusTargets) await loadStatus(t.url, t.key, t.s3Key, options.statusConnections, 1); // warm-up
    for (const t of targets) await loadPresign(t.url, t.key, 50, 2); // warm-up (JIT, caches)

    const rows: PresignRow[] = [];
    const raw = new Map<string, LoadFigures[]>();
    for (let round = 1; round <= options.rounds; round++) {
      for (const connections of options.connections) {
        for (const t of targets) {
          const figures = await measureWhileAlive(servers, () => loadPresign(t.url, t.key, connections, options.seconds), options.log);
          const id = `${t.id}@${connections}`;
          raw.set(id, [...(raw.get(id) ?? []), figures]);
          options.log(`presign round ${round} c=${connections} ${t.id}: ${figures.rps.toFixed(0)} req/s p99 ${figures.p99} ms errors ${figures.errors + figures.non2xx}`);
        }
      }
      for (const t of statusTargets) {
        const figures = await measureWhileAlive(
          servers,
          () => loadStatus(t.url, t.key, t.s3Key, options.statusConnections, options.seconds),
          options.log,
        );
        okRps(figures, `status on ${t.id}`);
        raw.set(`status-${t.id}`, [...(raw.get(`status-${t.id}`) ?? []), figures]);
        options.log(`status round ${round} c=${options.statusConnections} ${t.id}: ${figures.rps.toFixed(0)} req/s p99 ${figures.p99} ms`);
      }
    }
    const sideOf = (runs: LoadFigures[]): Side => ({
      rps: summarise(runs.map((f) => f.rps)),
      p50: summarise(runs.map((f) => f.p50)),
      p99: summarise(runs.map((f) => f.p99)),
      errors: runs.reduce((n, f) => n + f.errors + f.non2xx, 0),
    });
    const perRound = (a: LoadFigures[], b: LoadFigures[]) => summarise(a.map((f, i) => f.rps / b[i]!.rps));
    for (const connections of options.connections) {
      const of = (id: string) => raw.get(`${id}@${connections}`)!;
      const side = (id: string) => ({
        rps: summarise(of(id).map((f) => f.rps)),
        p50: summarise(of(id).map((f) => f.p50)),
        p99: summarise(of(id).map((f) => f.p99)),
        errors: of(id).reduce((n, f) => n + f.errors + f.non2xx, 0),
      });
      const kfRuns = of('keyframe');
      const s3Runs = raw.get(`keyframeS3@${connections}`);
      const pgRuns = raw.get(`keyframePg@${connections}`);
      rows.push({
        connections,
        keyframe: side('keyframe'),
        keyframeS3: s3Runs ? side('keyframeS3') : null,
        s3VsBare: s3Runs ? summarise(s3Runs.map((f, i) => f.rps / of('bare')[i]!.rps)) : null,
        s3VsSdk: s3Runs ? summarise(s3Runs.map((f, i) => f.rps / of('sdk')[i]!.rps)) : null,
        bare: side('bare'),
        sdk: side('sdk'),
        vsBare: summarise(kfRuns.map((f, i) => f.rps / of('bare')[i]!.rps)),
        vsSdk: summarise(kfRuns.map((f, i) => f.rps / of('sdk')[i]!.rps)),
        postgres: pgRuns
          ? {
              keyframe: sideOf(pgRuns),
              sdk: sideOf(of('sdkPg')),
              vsSdk: perRound(pgRuns, of('sdkPg')),
              vsSqlite: perRound(pgRuns, kfRuns),
            }
          : null,
      });
    }
    const statusSqlite = raw.get('status-sqlite');
    const statusPg = raw.get('status-postgres');
    const status =
      statusSqlite && statusPg
        ? { connections: options.statusConnections, sqlite: sideOf(statusSqlite), postgres: sideOf(statusPg), ratio: perRound(statusPg, statusSqlite) }
        : null;
    return { rows, status, responseBytes };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    for (const dir of cleanup) await rm(dir, { recursive: true, force: true });
    for (const db of databases) await db.drop().catch((err: Error) => options.log(`could not drop a scratch database: ${err.message}`));
  }
}
