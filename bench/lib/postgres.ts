import pg from 'pg';

/**
 * The PostgreSQL server the bench makes its scratch databases on: a URL of a
 * role that may CREATE DATABASE (`BENCH_POSTGRES_URL`, default the local
 * trust-auth server every developer and CI machine runs).
 */
export const BENCH_POSTGRES_URL = process.env.BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** Connections of each Keyframe's pool and of the usual-way peer's pool: the same for both, so neither gets more. */
export const BENCH_POOL_SIZE = 10;

/** The admin URL without its password, for log lines. */
export function describe(url: string): string {
  const u = new URL(url);
  u.password = '';
  return u.toString();
}

/** Resolves to null when PostgreSQL answers `select 1` within 2 s, else to the reason it did not. */
export async function postgresUnreachable(adminUrl = BENCH_POSTGRES_URL): Promise<string | null> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('select 1');
    return null;
  } catch (err) {
    return (err as Error).message || String(err);
  } finally {
    await client.end().catch(() => {});
  }
}

export interface ScratchDatabase {
  name: string;
  /** URL of the scratch database (same server and role as the admin URL). */
  url: string;
  drop(): Promise<void>;
}

let made = 0;

/** Creates an empty database `keyframe_bench_<label>_<pid>_<n>`; `drop()` removes it (forcing out any connection left). */
export async function createScratchDatabase(label: string, adminUrl = BENCH_POSTGRES_URL): Promise<ScratchDatabase> {
  const name = `keyframe_bench_${label.replace(/[^a-z0-9]+/gi, '_').toLowerCase()}_${process.pid}_${++made}`;
  await admin(adminUrl, `create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    drop: () => admin(adminUrl, `drop database if exists ${name} with (force)`),
  };
}

async function admin(adminUrl: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** Environment that runs `keyframe serve` on the PostgreSQL database at `url` with the bench's pool size. */
export function keyframePostgresEnv(url: string): Record<string, string> {
  return { KEYFRAME_DATABASE_URL: url, KEYFRAME_DATABASE_POOL_SIZE: String(BENCH_POOL_SIZE) };
}
