/**
 * Side bench (not part of `npm run bench`): the presign figure of builds of
 * Keyframe from other checkouts, side by side with this one, interleaved
 * round by round. AB_BUILDS=name=/path/to/checkout,… (each with dist/ built);
 * this checkout is always "shipped". Used for the limiter's cost (docs/performance.md).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { dataDirWithKey } from './lib/keys.js';
import { loadPresign } from './lib/presign-load.js';
import { BENCH_LIMITS, ROOT, sleep, startPeer } from './lib/processes.js';
import { freePort } from '../src/free-port.js';
import { summarise, fmt } from './lib/stats.js';

const builds = [{ name: 'shipped', root: ROOT }, ...(process.env.AB_BUILDS ?? '').split(',').filter(Boolean).map((s) => {
  const [name, root] = s.split('=');
  return { name: name!, root: root! };
})];
const rounds = Number(process.env.AB_ROUNDS ?? 5);
const seconds = Number(process.env.AB_SECONDS ?? 3);
const connections = (process.env.AB_CONNECTIONS ?? '10,50').split(',').map(Number);

async function dataDirOf(root: string, label: string): Promise<{ dataDir: string; key: string }> {
  const { mkdtemp } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dataDir = await mkdtemp(path.join(tmpdir(), `keyframe-bench-ab-${label}-`));
  const { openDatabase } = await import(path.join(root, 'dist/db/database.js'));
  const { ApiKeys } = await import(path.join(root, 'dist/domain/api-keys.js'));
  const db = await openDatabase(dataDir);
  const { key } = await new ApiKeys(db).createKey({ userId: 'bench' });
  await db.destroy();
  return { dataDir, key };
}

const started: { name: string; url: string; key: string; pid: number; stop: () => void }[] = [];
/** CPU time (user + system) of a process in µs, from /proc/<pid>/stat. */
function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100;
}
for (const b of builds) {
  // Each build makes its own data dir: their migrations differ.
  const { dataDir, key } = b.root === ROOT ? await dataDirWithKey(`ab-${b.name}`) : await dataDirOf(b.root, b.name);
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(b.root, 'bin/keyframe.js'), 'serve'], {
    cwd: b.root,
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), KEYFRAME_DATA_DIR: dataDir, ...BENCH_LIMITS },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (await fetch(url + '/healthz').then((r) => r.ok, () => false)) break;
    await sleep(100);
  }
  started.push({ name: b.name, url, key, pid: child.pid!, stop: () => child.kill('SIGTERM') });
}
const bare = await startPeer('bare', 'bare-fastify.ts', { BODY_BYTES: '400' });
started.push({ name: 'bare', url: bare.url, key: 'unused', pid: bare.pid, stop: () => void bare.stop() });
for (const s of started) await loadPresign(s.url, s.key, 50, 2);
const raw = new Map<string, number[]>();
const cpu = new Map<string, number[]>();
for (let r = 1; r <= rounds; r++) {
  for (const c of connections) {
    for (const s of started) {
      const cpu0 = cpuMicros(s.pid);
      const f = await loadPresign(s.url, s.key, c, seconds);
      const cpuPerRequest = (cpuMicros(s.pid) - cpu0) / (f.rps * seconds);
      cpu.set(`${s.name}@${c}`, [...(cpu.get(`${s.name}@${c}`) ?? []), cpuPerRequest]);
      if (f.errors + f.non2xx > 0) throw new Error(`${s.name}: ${f.errors} errors, ${f.non2xx} non-2xx`);
      raw.set(`${s.name}@${c}`, [...(raw.get(`${s.name}@${c}`) ?? []), f.rps]);
      process.stderr.write(`round ${r} c=${c} ${s.name}: ${f.rps.toFixed(0)} req/s, ${cpuPerRequest.toFixed(0)} µs CPU/request\n`);
    }
  }
}
for (const c of connections) {
  const ship = raw.get(`shipped@${c}`)!;
  for (const s of started) {
    const v = raw.get(`${s.name}@${c}`)!;
    const ratio = summarise(ship.map((x, i) => x / v[i]!));
    console.log(`| ${c} conn | ${s.name} | ${fmt(summarise(v))} req/s | ${fmt(summarise(cpu.get(`${s.name}@${c}`)!))} µs CPU/request | shipped / ${s.name}: ${fmt(ratio, 2)}× |`);
  }
}
for (const s of started) s.stop();
