import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import { dataDirWithKey } from './lib/keys.js';
import { loadAuthMiss, loadPresign, loadStatus, type LoadFigures } from './lib/presign-load.js';
import { measureWhileAlive, ROOT, startKeyframe, type ChildServer } from './lib/processes.js';
import { summarise, type Summary } from './lib/stats.js';

export interface ScaleRow {
  uploads: number;
  apiKeys: number;
  presignRps: Summary;
  baselinePresignRps: Summary;
  authMissRps: Summary;
  baselineAuthMissRps: Summary;
  statusRps: Summary;
  baselineStatusRps: Summary;
  /** Per-round ratio, scaled server / near-empty server, side by side. */
  presignRatio: Summary;
  authRatio: Summary;
  statusRatio: Summary;
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
 * (auth lookup + insert), auth misses (one key lookup, 401) and status lookups
 * of a verified upload (auth + one upload row) are loaded on both, round by
 * round. Flat means the ratio stays near 1 as N grows.
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
    const baselineUpload = await verifiedUpload(baseline.url, small.key);
    const scaledUpload = await verifiedUpload(scaled.url, big.key);
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
      const r = { p: [] as number[], pb: [] as number[], a: [] as number[], ab: [] as number[], s: [] as number[], sb: [] as number[] };
      for (let round = 1; round <= options.rounds; round++) {
        const alive = <T>(measure: () => Promise<T>) => measureWhileAlive(servers, measure, options.log);
        r.pb.push((await alive(() => loadPresign(baseline.url, small.key, options.connections, options.seconds))).rps);
        r.p.push((await alive(() => loadPresign(scaled.url, big.key, options.connections, options.seconds))).rps);
        r.ab.push((await alive(() => loadAuthMiss(baseline.url, options.connections, options.seconds))).rps);
        r.a.push((await alive(() => loadAuthMiss(scaled.url, options.connections, options.seconds))).rps);
        r.sb.push(ok(await alive(() => loadStatus(baseline.url, small.key, baselineUpload, options.connections, options.seconds))));
        r.s.push(ok(await alive(() => loadStatus(scaled.url, big.key, scaledUpload, options.connections, options.seconds))));
        options.log(
          `scale ${level} round ${round}: presign ${r.p.at(-1)!.toFixed(0)} vs ${r.pb.at(-1)!.toFixed(0)} req/s, ` +
            `auth miss ${r.a.at(-1)!.toFixed(0)} vs ${r.ab.at(-1)!.toFixed(0)} req/s, ` +
            `status ${r.s.at(-1)!.toFixed(0)} vs ${r.sb.at(-1)!.toFixed(0)} req/s`,
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
        statusRps: summarise(r.s),
        baselineStatusRps: summarise(r.sb),
        statusRatio: summarise(r.s.map((v, i) => v / r.sb[i]!)),
      });
    }
    const plan = (q: string, ...args: unknown[]) =>
      (db.prepare(`explain query plan ${q}`).all(...args) as { detail: string }[]).map((p) => p.detail).join('; ');
    const queryPlans = {
      'api key lookup': plan('select id, user_id, key_hash, scopes, revoked_at from api_keys where key_hash = ?', 'x'),
      'upload status (by key and owner)': plan('select * from uploads where s3_key = ? and user_id = ?', 'x', 'y'),
    };
    db.close();
    return { rows, queryPlans };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await rm(small.dataDir, { recursive: true, force: true });
    await rm(big.dataDir, { recursive: true, force: true });
  }
}

/** Presigns, uploads and verifies the sample PNG for the key's user; resolves to its s3_key. */
async function verifiedUpload(url: string, key: string): Promise<string> {
  const auth = { authorization: `Bearer ${key}` };
  const presign = await fetch(`${url}/api/s3/presign-upload`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'upload', contentType: 'image/png' }),
  });
  const { upload_url: uploadUrl, s3_key: s3Key } = (await presign.json()) as { upload_url: string; s3_key: string };
  const put = await fetch(uploadUrl, {
    method: 'PUT',
    headers: { 'content-type': 'image/png' },
    body: await readFile(path.join(ROOT, 'test/fixtures/media/sample.png')),
  });
  if (!put.ok) throw new Error(`scale: upload of the status fixture answered ${put.status}`);
  const status = (await (await fetch(`${url}/api/uploads/status?key=${encodeURIComponent(s3Key)}`, { headers: auth })).json()) as { state: string };
  if (status.state !== 'verified') throw new Error(`scale: the status fixture is ${status.state}, not verified`);
  return s3Key;
}

/** Requests/s of a load whose every answer was a 2xx; a bench must not time error pages. */
function ok(figures: LoadFigures): number {
  if (figures.errors > 0 || figures.non2xx > 0) throw new Error(`scale: status load had ${figures.errors} errors and ${figures.non2xx} non-2xx answers`);
  return figures.rps;
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
