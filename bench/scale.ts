import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import { dataDirWithKey } from './lib/keys.js';
import { loadAuthMiss, loadPresign } from './lib/presign-load.js';
import { measureWhileAlive, startKeyframe, type ChildServer } from './lib/processes.js';
import { summarise, type Summary } from './lib/stats.js';

export interface ScaleRow {
  uploads: number;
  apiKeys: number;
  presignRps: Summary;
  baselinePresignRps: Summary;
  authMissRps: Summary;
  baselineAuthMissRps: Summary;
  /** Per-round ratio, scaled server / near-empty server, side by side. */
  presignRatio: Summary;
  authRatio: Summary;
}

export interface ScaleOptions {
  levels: number[];
  rounds: number;
  seconds: number;
  connections: number;
  log: (line: string) => void;
}

/**
 * Scale of cost: two Keyframe servers side by side, one on a near-empty database
 * and one whose database is filled with N upload rows and N API keys; presign
 * (auth lookup + insert) and auth misses (one key lookup, 401) are loaded on
 * both, round by round. Flat means the ratio stays near 1 as N grows.
 */
export async function benchScale(options: ScaleOptions): Promise<{ rows: ScaleRow[]; queryPlans: Record<string, string> }> {
  const small = await dataDirWithKey('scale-base');
  const big = await dataDirWithKey('scale-big');
  const servers: ChildServer[] = [];
  try {
    const baseline = await startKeyframe('keyframe (empty db)', small.dataDir);
    servers.push(baseline);
    const scaled = await startKeyframe('keyframe (filled db)', big.dataDir);
    servers.push(scaled);
    const db = new SQLite(path.join(big.dataDir, 'keyframe.sqlite'));
    db.pragma('journal_mode = WAL');
    // A large page cache for the bulk fill only (the server keeps its own settings).
    db.pragma('cache_size = -524288');
    db.pragma('busy_timeout = 5000');
    const users = Array.from({ length: 100 }, (_, i) => `scale-${i}`);
    const addUser = db.prepare("insert or ignore into users (id, webhook_secret, created_at) values (?, 'whsec_bench', ?)");
    for (const u of users) addUser.run(u, new Date().toISOString());

    const rows: ScaleRow[] = [];
    let filled = 0;
    for (const level of options.levels) {
      const t0 = Date.now();
      fill(db, users, filled, level);
      filled = level;
      db.pragma('wal_checkpoint(TRUNCATE)');
      options.log(`scale: filled to ${level} uploads and ${level} API keys in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      await loadPresign(scaled.url, big.key, options.connections, 1); // warm the page cache after the fill
      const r = { p: [] as number[], pb: [] as number[], a: [] as number[], ab: [] as number[] };
      for (let round = 1; round <= options.rounds; round++) {
        const alive = <T>(measure: () => Promise<T>) => measureWhileAlive(servers, measure, options.log);
        r.pb.push((await alive(() => loadPresign(baseline.url, small.key, options.connections, options.seconds))).rps);
        r.p.push((await alive(() => loadPresign(scaled.url, big.key, options.connections, options.seconds))).rps);
        r.ab.push((await alive(() => loadAuthMiss(baseline.url, options.connections, options.seconds))).rps);
        r.a.push((await alive(() => loadAuthMiss(scaled.url, options.connections, options.seconds))).rps);
        options.log(
          `scale ${level} round ${round}: presign ${r.p.at(-1)!.toFixed(0)} vs ${r.pb.at(-1)!.toFixed(0)} req/s, ` +
            `auth miss ${r.a.at(-1)!.toFixed(0)} vs ${r.ab.at(-1)!.toFixed(0)} req/s`,
        );
      }
      rows.push({
        uploads: level,
        apiKeys: level,
        presignRps: summarise(r.p),
        baselinePresignRps: summarise(r.pb),
        authMissRps: summarise(r.a),
        baselineAuthMissRps: summarise(r.ab),
        presignRatio: summarise(r.p.map((v, i) => v / r.pb[i]!)),
        authRatio: summarise(r.a.map((v, i) => v / r.ab[i]!)),
      });
    }
    const plan = (q: string, ...args: unknown[]) =>
      (db.prepare(`explain query plan ${q}`).all(...args) as { detail: string }[]).map((p) => p.detail).join('; ');
    const queryPlans = {
      'api key lookup': plan('select id, user_id, key_hash, scopes, revoked_at from api_keys where key_hash = ?', 'x'),
      'upload lookup by key and owner': plan('select * from uploads where s3_key = ? and user_id = ?', 'x', 'y'),
    };
    db.close();
    return { rows, queryPlans };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await rm(small.dataDir, { recursive: true, force: true });
    await rm(big.dataDir, { recursive: true, force: true });
  }
}

/** Adds upload rows and API keys from index `from` up to `to`, in large transactions. */
function fill(db: SQLite.Database, users: string[], from: number, to: number): void {
  const now = new Date().toISOString();
  const addUpload = db.prepare(
    `insert into uploads (s3_key, user_id, content_type, max_bytes, content_length, file_name, state, size, sha256, created_at, expires_at, uploaded_at)
     values (?, ?, 'image/png', 20971520, null, null, 'uploaded', 1024, ?, ?, ?, ?)`,
  );
  const addKey = db.prepare(
    `insert into api_keys (id, user_id, key_hash, display_prefix, scopes, name, created_at, revoked_at)
     values (?, ?, ?, 'prism_sk_xxxxxx', '["templates:read"]', null, ?, null)`,
  );
  const chunk = db.transaction((start: number, end: number) => {
    for (let i = start; i < end; i++) {
      const user = users[i % users.length]!;
      const id = i.toString(36).padStart(22, '0');
      const hash = createHash('sha256').update(`bench-${i}`).digest('hex');
      addUpload.run(`users/${user}/user-uploads/batch_${id}/file_${id}.png`, user, hash, now, now, now);
      addKey.run(`key_${id}`, user, hash, now);
    }
  });
  for (let start = from; start < to; start += 50_000) chunk(start, Math.min(to, start + 50_000));
}
