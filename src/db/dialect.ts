import { PostgresAdapter, sql, type Expression, type Kysely } from 'kysely';

/**
 * The one place where the schema differs by dialect. Everything else in the
 * migrations and queries is Kysely's portable API and runs as is on both.
 */

/** Which dialect `db` (or a transaction or migration handle on it) speaks. */
export function dialectOf(db: Kysely<any>): 'sqlite' | 'postgres' {
  return db.getExecutor().adapter instanceof PostgresAdapter ? 'postgres' : 'sqlite';
}

/**
 * The type of a text column. SQLite compares text byte by byte (BINARY); a
 * PostgreSQL column takes the database's collation, which is often a locale
 * (en_US.UTF-8) that sorts `Bob` after `alice` and ignores punctuation. Ids,
 * user ids and ISO timestamps are ordered by (listings, the fair queue's
 * tie-breaks), so PostgreSQL's text columns are `COLLATE "C"`: byte order,
 * the same order as SQLite's whatever the database's default, and cheaper
 * B-tree comparisons (memcmp, not strcoll) besides.
 */
export function textType(db: Kysely<any>): 'text' | Expression<unknown> {
  return dialectOf(db) === 'postgres' ? sql`text collate "C"` : 'text';
}
