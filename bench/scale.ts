import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { dataDirWithKey, postgresWithKey } from './lib/keys.js';
import { keyframePostgresEnv } from './lib/postgres.js';
import { loadAuthMiss, loadPresign, loadStatus } from './lib/presign-load.js';
import { measureWhileAlive, startKeyframe, type ChildServer } from './lib/processes.js';
import { summarise, type Summary } from './lib/stats.js';
import { okRps, verifiedUpload } from './lib/uploads.js';

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
  /** Which metadata database both servers run on; for `postgres`, the admin URL scratch databases are made with. */
  dialect: 'sqlite' | 'postgres';
  postgresAdminUrl?: string;
  log: (line: string) => void;
}

/** The filled database, written to directly (not through the server), and its query plans. */
interface Filler {
  addUsers(users: string[]): Promise<void>;
  /** Adds upload rows and API keys from index `from` up to `to`. */
  fill(users: string[], from: number, to: number): Promise<void>;
  /** After a fill: what makes the database steady for reads (a WAL checkpoint; VACUUM ANALYZE). */
  settle(): Promise<void>;
  queryPlans(): Promise<Record<string, string>>;
  close(): Promise<void>;
}

/**
 * Scale of cost: two Keyframe servers side by side, one on a near-empty database
 * and one whose database is filled with N upload rows and N API keys; presign
 * (auth lookup + insert), auth misses (one key lookup, 401) and status lookups
 * of a verified upload (auth + one upload row) are loaded on both, round by
 * round. Flat means the ratio stays near 1 as N grows. Runs on SQLite (a
 * database file each) or on PostgreSQL (a scratch database each).
 */
export async function benchScale(
  options: ScaleOptions,
): Promise<{ dialect: 'sqlite' | 'postgres'; rows: ScaleRow[]; queryPlans: Record<string, string> }> {
  const servers: ChildServer[] = [];
  const dirs: string[] = [];
  const databases: { drop(): Promise<void> }[] = [];
  let filler: Filler | null = null;
  try {
    let baseline: ChildServer;
    let scaled: ChildServer;
    let smallKey: string;
    let bigKey: string;
    if (options.dialect === 'postgres') {
      const small = await postgresWithKey('scale_base', options.postgresAdminUrl);
      const big = await postgresWithKey('scale_big', options.postgresAdminUrl);
      databases.push(small.database, big.database);
      dirs.push(small.dataDir, big.dataDir);
      baseline = await startKeyframe('keyframe (empty postgres db)', small.dataDir, keyframePostgresEnv(small.database.url));
      servers.push(baseline);
      scaled = await startKeyframe('keyframe (filled postgres db)', big.dataDir, keyframePostgresEnv(big.database.url));
      servers.push(scaled);
      [smallKey, bigKey] = [small.key, big.key];
      filler = await postgresFiller(big.database.url);
    } else {
      const small = await dataDirWithKey('scale-base');
      const big = await dataDirWithKey('scale-big');
      dirs.push(small.dataDir, big.dataDir);
      baseline = await startKeyframe('keyframe (empty db)', small.dataDir);
      servers.push(baseline);
      scaled = await startKeyframe('keyframe (filled db)', big.dataDir);
      servers.push(scaled);
      [smallKey, bigKey] = [small.key, big.key];
      filler = sqliteFiller(path.join(big.dataDir, 'keyframe.sqlite'));
    }
    const baselineUpload = await verifiedUpload(baseline.url, smallKey);
    const scaledUpload = await verifiedUpload(scaled.url, bigKey);
    const users = Array.from({ length: 100 }, (_, i) => `scale-${i}`);
    await filler.addUsers(users);

    const rows: ScaleRow[] = [];
    let filled = 0;
    const tag = options.dialect === 'postgres' ? 'scale (postgres)' : 'scale';
    for (const level of options.levels) {
      const t0 = Date.now();
      await filler.fill(users, filled, level);
      filled = level;
      await filler.settle();
      options.log(`${tag}: filled to ${level} uploads and ${level} API keys in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      await loadPresign(scaled.url, bigKey, options.connections, 1); // warm the page cache after the fill
      const r = { p: [] as number[], pb: [] as number[], a: [] as number[], ab: [] as number[], s: [] as number[], sb: [] as number[] };
      for (let round = 1; round <= options.rounds; round++) {
        const alive = <T>(measure: () => Promise<T>) => measureWhileAlive(servers, measure, options.log);
        r.pb.push((await alive(() => loadPresign(baseline.url, smallKey, options.connections, options.seconds))).rps);
        r.p.push((await alive(() => loadPresign(scaled.url, bigKey, options.connections, options.seconds))).rps);
        r.ab.push((await alive(() => loadAuthMiss(baseline.url, options.connections, options.seconds))).rps);
        r.a.push((await alive(() => loadAuthMiss(scaled.url, options.connections, options.seconds))).rps);
        r.sb.push(okRps(await alive(() => loadStatus(baseline.url, smallKey, baselineUpload, options.connections, options.seconds)), `${tag}: status`));
        r.s.push(okRps(await alive(() => loadStatus(scaled.url, bigKey, scaledUpload, options.connections, options.seconds)), `${tag}: status`));
        options.log(
          `${tag} ${level} round ${round}: presign ${r.p.at(-1)!.toFixed(0)} vs ${r.pb.at(-1)!.toFixed(0)} req/s, ` +
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
    const queryPlans = await filler.queryPlans();
    return { dialect: options.dialect, rows, queryPlans };
  } finally {
    await filler?.close();
    await Promise.all(servers.map((s) => s.stop()));
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
    for (const db of databases) await db.drop().catch((err: Error) => options.log(`could not drop a scratch database: ${err.message}`));
  }
}

/** The hot queries whose plans are printed: as the server runs them, by hand (the key lookup, status, the upload quota's two ranges). */
const HOT_QUERIES = {
  'api key lookup': 'select id, user_id, key_hash, scopes, revoked_at from api_keys where key_hash = ?',
  'upload status (by key and owner)': 'select * from uploads where s3_key = ? and user_id = ?',
  'quota: live pending uploads of a user':
    "select count(*), sum(coalesce(content_length, max_bytes)) from uploads where user_id = ? and state = 'pending' and expires_at > ?",
  'quota: stored bytes of a user': "select coalesce(sum(size), 0) from uploads where user_id = ? and state in ('uploaded', 'verified')",
};
const PLAN_ARGS: Record<keyof typeof HOT_QUERIES, unknown[]> = {
  'api key lookup': ['x'],
  'upload status (by key and owner)': ['x', 'scale-0'],
  'quota: live pending uploads of a user': ['scale-0', new Date().toISOString()],
  'quota: stored bytes of a user': ['scale-0'],
};

function sqliteFiller(file: string): Filler {
  const db = new SQLite(file);
  db.pragma('journal_mode = WAL');
  // A large page cache for the bulk fill only (the server keeps its own settings).
  db.pragma('cache_size = -524288');
  db.pragma('busy_timeout = 5000');
  return {
    async addUsers(users) {
      const addUser = db.prepare("insert or ignore into users (id, webhook_secret, created_at) values (?, 'whsec_bench', ?)");
      for (const u of users) addUser.run(u, new Date().toISOString());
    },
    async fill(users, from, to) {
      fillSqlite(db, users, from, to);
    },
    async settle() {
      db.pragma('wal_checkpoint(TRUNCATE)');
    },
    async queryPlans() {
      const plans: Record<string, string> = {};
      for (const [name, q] of Object.entries(HOT_QUERIES)) {
        const args = PLAN_ARGS[name as keyof typeof HOT_QUERIES];
        plans[name] = (db.prepare(`explain query plan ${q}`).all(...args) as { detail: string }[]).map((p) => p.detail).join('; ');
      }
      return plans;
    },
    async close() {
      if (db.open) db.close();
    },
  };
}

/**
 * PostgreSQL: rows made by the server itself, in one INSERT … SELECT over
 * generate_series per chunk (the key hash by PostgreSQL's own sha256), then
 * VACUUM ANALYZE, so that the planner has statistics and the visibility map
 * is set (index-only scans), as autovacuum would leave a long-lived table.
 */
async function postgresFiller(url: string): Promise<Filler> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  // Timestamps are bound as ISO strings cast to whatever type the columns have (text or timestamptz).
  const { rows: columns } = await client.query<{ table_name: string; column_name: string; udt_name: string }>(
    "select table_name, column_name, udt_name from information_schema.columns where table_name in ('uploads', 'api_keys', 'users')",
  );
  const typeOf = (table: string, column: string) => {
    const t = columns.find((c) => c.table_name === table && c.column_name === column)?.udt_name;
    if (!t) throw new Error(`scale (postgres): no column ${table}.${column}`);
    return t;
  };
  const ts = (table: string, column: string) => `$1::${typeOf(table, column)}`;
  return {
    async addUsers(users) {
      await client.query(
        `insert into users (id, webhook_secret, created_at) select u, 'whsec_bench', ${ts('users', 'created_at')} from unnest($2::text[]) as u on conflict do nothing`,
        [new Date().toISOString(), users],
      );
    },
    async fill(users, from, to) {
      const now = new Date().toISOString();
      const id = "lpad(to_hex(i), 22, '0')";
      const user = `'scale-' || (i % ${users.length})`;
      for (let start = from; start < to; start += 250_000) {
        const end = Math.min(to, start + 250_000);
        await client.query(
          `insert into uploads (s3_key, user_id, content_type, max_bytes, content_length, file_name, state, size, sha256, created_at, expires_at, uploaded_at)
           select 'users/' || ${user} || '/user-uploads/batch_' || ${id} || '/file_' || ${id} || '.png', ${user}, 'image/png', 20971520, null, null,
                  'uploaded', 1024, encode(sha256(('bench-' || i)::bytea), 'hex'),
                  ${ts('uploads', 'created_at')}, ${ts('uploads', 'expires_at')}, ${ts('uploads', 'uploaded_at')}
           from generate_series($2::bigint, $3::bigint - 1) as i`,
          [now, start, end],
        );
        await client.query(
          `insert into api_keys (id, user_id, key_hash, display_prefix, scopes, name, created_at, revoked_at)
           select 'key_' || ${id}, ${user}, encode(sha256(('bench-' || i)::bytea), 'hex'), 'prism_sk_xxxxxx', '["templates:read"]', null,
                  ${ts('api_keys', 'created_at')}, null
           from generate_series($2::bigint, $3::bigint - 1) as i`,
          [now, start, end],
        );
      }
    },
    async settle() {
      await client.query('vacuum analyze uploads, api_keys, users');
    },
    async queryPlans() {
      const plans: Record<string, string> = {};
      for (const [name, q] of Object.entries(HOT_QUERIES)) {
        let n = 0;
        const numbered = q.replace(/\?/g, () => `$${++n}`);
        const { rows } = await client.query<{ 'QUERY PLAN': string }>(`explain ${numbered}`, PLAN_ARGS[name as keyof typeof HOT_QUERIES]);
        // Without the cost estimates: the plan's shape is what is checked (index, index-only, no scan).
        plans[name] = rows.map((r) => r['QUERY PLAN'].replace(/\s+\(cost=[^)]*\)/, '').trim()).join('; ');
      }
      return plans;
    },
    async close() {
      await client.end().catch(() => {});
    },
  };
}

/** Adds upload rows and API keys from index `from` up to `to`, in large transactions. */
function fillSqlite(db: SQLite.Database, users: string[], from: number, to: number): void {
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
