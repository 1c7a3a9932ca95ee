import pg from 'pg';

/**
 * The PostgreSQL side of src/db/database.ts: the `pg` pool under Kysely's
 * PostgresDialect, made in one place with the type parsers that make its
 * results look like SQLite's, and the check that the database can be reached.
 */

/** A PostgreSQL database that cannot be reached (or refuses us) at start: one line naming host, port and database, never the password. */
export class DatabaseUnreachable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatabaseUnreachable';
    // A start-up failure printed as one line: no stack to show.
    this.stack = `${this.name}: ${message}`;
  }
}

/** Where a `postgres://` URL points, without its credentials: what errors may name. */
export interface PostgresAddress {
  host: string;
  port: number;
  database: string;
}

export function postgresAddress(url: string): PostgresAddress {
  const u = new URL(url);
  const user = decodeURIComponent(u.username) || 'postgres';
  return {
    // ?host= (a unix socket directory) takes precedence, as it does for libpq and pg.
    host: u.searchParams.get('host') ?? (decodeURIComponent(u.hostname).replace(/^\[(.*)\]$/, '$1') || 'localhost'),
    port: Number(u.port || u.searchParams.get('port') || 5432),
    database: decodeURIComponent(u.pathname.slice(1)) || user,
  };
}

const INT8 = 20; // count(*), sum(integer), bigint columns (sizes)
const NUMERIC = 1700; // sum(bigint)

/**
 * int8 and numeric come back from node-postgres as strings (they may not fit a
 * double); SQLite gives numbers. Every int8 and numeric Keyframe reads is a
 * count or a byte total, far below 2^53, so they are parsed as numbers, and a
 * value that would lose precision is an error rather than a silently wrong
 * number. The other types already match SQLite's: int4 and float8 parse as
 * numbers, text as strings (timestamps are ISO-8601 text columns on both
 * dialects, never `timestamp`, so no Date objects appear), and the schema has
 * no boolean columns (PostgreSQL's `bool` would parse as true/false where
 * SQLite has 0/1: add a parser here before adding one).
 */
function parseExactNumber(text: string): number {
  const n = Number(text);
  if (/^-?\d+$/.test(text) ? !Number.isSafeInteger(n) : !Number.isFinite(n)) {
    throw new RangeError(`PostgreSQL returned ${text}, which a JavaScript number cannot hold exactly`);
  }
  return n;
}

const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) => {
    if ((oid === INT8 || oid === NUMERIC) && format !== 'binary') return parseExactNumber;
    return pg.types.getTypeParser(oid, format as 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
};

/** How long a connection attempt may take before the start gives up (a firewall that drops packets). */
const CONNECT_TIMEOUT_MS = 10_000;

/**
 * The pool, after one connection has been made and released, so that a wrong
 * URL stops the start with a DatabaseUnreachable instead of failing the first
 * request. Later connection failures fail their queries; the pool replaces
 * the broken connection.
 */
export async function openPool(url: string, poolSize: number): Promise<pg.Pool> {
  const pool = new pg.Pool({
    connectionString: url,
    max: poolSize,
    types: TYPES,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    application_name: 'keyframe',
  });
  // An idle connection that the server drops (restart, idle timeout) is reported here; without a
  // listener it would crash the process. The pool discards that connection and opens a new one when needed.
  pool.on('error', () => {});
  try {
    const client = await pool.connect();
    client.release();
  } catch (err) {
    await pool.end().catch(() => {});
    throw unreachable(url, err);
  }
  return pool;
}

function unreachable(url: string, err: unknown): DatabaseUnreachable {
  const { host, port, database } = postgresAddress(url);
  return new DatabaseUnreachable(`cannot reach the PostgreSQL database "${database}" at ${host}:${port}: ${reason(url, err)}`);
}

/** Why, in a few words; whatever the driver said is stripped of the password first. */
function reason(url: string, err: unknown): string {
  const e = err as { code?: string; message?: string };
  switch (e?.code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'unknown host';
    case 'ETIMEDOUT':
      return 'timed out';
    case '3D000':
      return 'no such database';
    case '28P01':
    case '28000':
      return 'authentication failed';
  }
  const message = String(e?.message ?? err).split('\n')[0]!;
  if (/timeout/i.test(message)) return 'timed out';
  return withoutPassword(message, url);
}

/** `message` with the password of `url` (should the driver have echoed it) masked. */
export function withoutPassword(message: string, url: string): string {
  const password = passwordOf(url);
  return password ? message.split(password).join('***') : message;
}

function passwordOf(url: string): string {
  try {
    const u = new URL(url);
    return decodeURIComponent(u.password) || u.searchParams.get('password') || '';
  } catch {
    return '';
  }
}
