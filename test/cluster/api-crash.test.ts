import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/database.js';
import { clusterEnv, clusterOf, clusterScript, createKey, openClusterDb, pidOf, presign } from './cluster.js';

// An API node SIGKILLed under a presign load through nginx. What the crash may cost is the
// requests in flight on that node (nginx answers them 502 and, a POST not being idempotent, never
// replays them elsewhere: deploy/nginx/keyframe.conf); every other request is answered by the
// other nodes, and every presign answered 200 has its `uploads` record: no answer without a record.

const env = clusterEnv();
const TOTAL = 300;
const CONCURRENCY = 8;
const KILL_AFTER = 100;
/** How long after the kill nginx may still write a request on a kept-alive connection to the dead node (it learns of the close at once, give or take an event-loop turn). */
const DEATH_NOTICED_MS = 500;
/** Presigns sent once the node is dead and nginx knows it: every one must succeed. */
const AFTER_DEATH = 40;
// Several users, so that no one reaches the default limit of 100 pending uploads.
const USERS = 6;
let db: Db;
let killed = false;

describe.skipIf(!env)('an API node SIGKILLed under load', () => {
  const cluster = env ? clusterOf(env) : null!;
  beforeAll(async () => {
    db = await openClusterDb(cluster);
  });
  afterAll(async () => {
    if (killed) await clusterScript('start', 'api2');
    await db?.destroy();
  });

  it(`costs only that node's in-flight requests among ${TOTAL} presigns at concurrency ${CONCURRENCY}, and every 200 is recorded`, async () => {
    const keys = await Promise.all(Array.from({ length: USERS }, (_, i) => createKey(cluster, `load-${i}`)));
    const accessLog = path.join(cluster.dir, 'logs', 'nginx.access.log');
    const logOffset = statSync(accessLog).size;
    const node2 = new URL(cluster.apiUrls[1]!).host;

    const results: { status: number; s3Key: string | null; sentToDeadNode: boolean }[] = [];
    let next = 0;
    let kill: Promise<unknown> | null = null;
    const load = async () => {
      while (next < TOTAL) {
        const i = next++;
        const answer = await presign(cluster.url, keys[i % USERS]!.key);
        results.push({ status: answer.status, s3Key: answer.status === 200 ? answer.body.s3_key : null, sentToDeadNode: false });
        if (results.length === KILL_AFTER) {
          killed = true;
          kill = clusterScript('kill', 'api2');
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, load));
    await kill;
    expect(pidOf(cluster, 'api2')).toBeNull();
    // Once nginx has seen the node's connections close (a request sent in the first moments after the
    // kill may still be written on a kept-alive connection to it: in flight there, like those before the
    // kill, and within the bound below), every request goes to the others: a refused connect is retried.
    await new Promise((r) => setTimeout(r, DEATH_NOTICED_MS));
    const after = await Promise.all(Array.from({ length: AFTER_DEATH }, (_, i) => presign(cluster.url, keys[i % USERS]!.key)));
    expect(after.map((a) => a.status).filter((status) => status !== 200)).toEqual([]);
    for (const a of after) results.push({ status: a.status, s3Key: a.body.s3_key, sentToDeadNode: true });

    expect(results).toHaveLength(TOTAL + AFTER_DEATH);
    const failed = results.filter((r) => r.status !== 200);
    const sentLate = results.filter((r) => r.sentToDeadNode);
    console.log(`api2 SIGKILLed after ${KILL_AFTER} answers: ${failed.length} of ${TOTAL} presigns failed (${failed.map((f) => f.status).join(', ') || 'none'}); ${sentLate.length} sent once it was dead`);
    // Only what was in flight on the dead node: at most one request per connection of the load.
    expect(failed.length, JSON.stringify(failed)).toBeLessThanOrEqual(CONCURRENCY);
    // nginx's answer for a request the node took and never answered, not a replay's.
    for (const f of failed) expect(f.status).toBe(502);
    // Requests sent once the node was dead all went to the others (a refused connect is retried).
    expect(sentLate.length, 'the load ended before the node was dead').toBeGreaterThan(0);
    expect(sentLate.filter((r) => r.status !== 200)).toEqual([]);
    // Each 502 was one of node 2's.
    const lines = readFileSync(accessLog, 'utf8').slice(logOffset).split('\n').filter((l) => l.includes('POST /api/s3/presign-upload'));
    expect(lines).toHaveLength(TOTAL + AFTER_DEATH);
    const bad = lines.filter((l) => / 502 /.test(l));
    expect(bad).toHaveLength(failed.length);
    for (const line of bad) expect(line, line).toContain(`upstream=${node2} `);

    // Every presign answered 200 has its record, whichever node answered it.
    const answered = results.filter((r) => r.status === 200).map((r) => r.s3Key!);
    const recorded = new Set<string>();
    for (let i = 0; i < answered.length; i += 100) {
      const rows = await db.selectFrom('uploads').select('s3_key').where('s3_key', 'in', answered.slice(i, i + 100)).execute();
      for (const r of rows) recorded.add(r.s3_key);
    }
    expect(answered.filter((k) => !recorded.has(k))).toEqual([]);
    expect(recorded.size).toBe(answered.length);
  });
});
