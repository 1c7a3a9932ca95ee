import { sql, type CompiledQuery, type KyselyPlugin } from 'kysely';
import type { Db } from '../../src/db/database.js';

/**
 * What the plan tests (test/db/*-plans.test.ts) need: the queries a piece of code really
 * compiles, and each one's plan as the database would run it.
 */

/** Runs `work` on a handle of `db` that records every query it compiles; those queries, in order. */
export async function capturedQueries(db: Db, work: (db: Db) => Promise<unknown>): Promise<CompiledQuery[]> {
  const queries: CompiledQuery[] = [];
  const executor = db.getExecutor();
  const plugin: KyselyPlugin = {
    transformQuery: ({ node, queryId }) => {
      queries.push(executor.compileQuery(node, queryId));
      return node;
    },
    transformResult: async ({ result }) => result,
  };
  await work(db.withPlugin(plugin));
  return queries;
}

/** SQLite's EXPLAIN QUERY PLAN of `query`, its parameters inlined; one detail line per step. */
export async function sqlitePlan(db: Db, { sql: text, parameters }: CompiledQuery): Promise<string[]> {
  let i = 0;
  const inlined = text.replace(/\?/g, () => {
    const p = parameters[i++];
    return typeof p === 'number' ? String(p) : `'${String(p)}'`;
  });
  return (await sql.raw<{ detail: string }>(`explain query plan ${inlined}`).execute(db)).rows.map((r) => r.detail);
}

/** PostgreSQL's EXPLAIN of `query`, with its parameters; the plan's lines. */
export async function postgresPlan(db: Db, query: CompiledQuery): Promise<string> {
  const { rows } = await db.executeQuery<{ 'QUERY PLAN': string }>({ ...query, sql: `explain ${query.sql}`, query: query.query });
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}
