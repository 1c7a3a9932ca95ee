import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/free-port.js';
import { ROOT, startKeyframe, type ChildServer } from '../../bench/lib/processes.js';
import { openDatabase } from '../../src/db/database.js';
import { ApiKeys } from '../../src/domain/api-keys.js';
import { filesUnder } from './support/checks.js';

/**
 * Crash safety of generations: the real `keyframe serve` process is SIGKILLed
 * while generations are queued and rendering (local runner), at seeded random
 * moments, and restarted on the same data dir. Every generation must end
 * `completed` (with a video that downloads) or `failed` (with an error), never
 * stay `generating`, and no temporary file may be left behind.
 */
const KILLS = 3;
const PER_ROUND = 2;
const SETTLE_MS = 150_000;

let dataDir: string;
let key: string;
let server: ChildServer | null = null;

beforeAll(async () => {
  if (!existsSync(path.join(ROOT, 'dist/cli/main.js'))) throw new Error('dist/ is missing: run `npm run build` (npm run test:reliability does)');
  dataDir = await mkdtemp(path.join(tmpdir(), 'keyframe-crash-gen-'));
  const db = await openDatabase(dataDir);
  try {
    key = (await new ApiKeys(db).createKey({ userId: 'crashgen' })).key;
  } finally {
    await db.destroy();
  }
});

afterAll(async () => {
  await server?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

async function call(method: string, pathname: string, body?: unknown) {
  const res = await fetch(server!.url + pathname, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as any) : null };
}

describe('crash safety of generations', () => {
  it(`SIGKILL during generations, ${KILLS} times: each ends completed or failed`, async () => {
    const seed = Number(process.env.CRASH_SEED ?? Date.now() % 1_000_000);
    let s = seed;
    const random = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
    console.log(`crash-generations: seed ${seed} (CRASH_SEED=${seed} replays it)`);
    // A short lease: after each SIGKILL the restarted server takes up the running jobs once their lease lapsed.
    const env = { PORT: String(await freePort()), LOG_LEVEL: 'warn', KEYFRAME_GENERATION_LEASE_SECONDS: '3' };
    server = await startKeyframe('keyframe', dataDir, env);

    const probe = await call('POST', '/api/generations', {});
    if (probe.status === 404) {
      console.warn('crash-generations: POST /api/generations does not exist in this build; nothing to test');
      return;
    }

    const ids: string[] = [];
    for (let round = 1; round <= KILLS; round++) {
      for (let i = 0; i < PER_ROUND; i++) {
        const res = await call('POST', '/api/generations', { prompt: `crash round ${round} #${i}`, modelName: 'keyframe-local', duration: '2s', resolution: '480p' });
        expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
        for (const g of res.body.generations as { generation_id: string }[]) ids.push(g.generation_id);
      }
      const wait = 200 + Math.floor(random() * 2500);
      await new Promise((r) => setTimeout(r, wait));
      server.child.kill('SIGKILL');
      await new Promise((r) => server!.child.once('exit', r));
      console.log(`crash-generations: round ${round}: killed after ${wait} ms with ${ids.length} generations submitted`);
      server = await startKeyframe('keyframe', dataDir, env);
    }

    const deadline = Date.now() + SETTLE_MS;
    const final = new Map<string, any>();
    while (final.size < ids.length && Date.now() < deadline) {
      for (const id of ids) {
        if (final.has(id)) continue;
        const res = await call('GET', `/api/generations/${id}`);
        expect(res.status).toBe(200);
        if (res.body.status !== 'generating') final.set(id, res.body);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    const stuck = ids.filter((id) => !final.has(id));
    expect(stuck, `still generating after ${SETTLE_MS / 1000} s`).toEqual([]);
    const tally: Record<string, number> = {};
    for (const [id, g] of final) {
      tally[g.status] = (tally[g.status] ?? 0) + 1;
      expect(['completed', 'failed'], id).toContain(g.status);
      if (g.status === 'completed') {
        expect(g.completed_at, id).toEqual(expect.any(String));
        const video = await fetch(g.video_url);
        expect(video.status, `${id} video`).toBe(200);
        expect((await video.arrayBuffer()).byteLength, `${id} video bytes`).toBeGreaterThan(1000);
      } else {
        expect(g.error, id).toEqual(expect.any(String));
      }
    }
    console.log(`crash-generations: ${JSON.stringify(tally)}`);
    expect(await filesUnder(path.join(dataDir, 'tmp')), 'tmp/ once everything settled').toEqual([]);
  });
});
