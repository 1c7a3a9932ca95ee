import { rm } from 'node:fs/promises';
import { dataDirWithKey } from './lib/keys.js';
import { loadPresign, type LoadFigures } from './lib/presign-load.js';
import { measureWhileAlive, startKeyframe, startPeer, type ChildServer } from './lib/processes.js';
import { summarise, type Summary } from './lib/stats.js';

type Side = { rps: Summary; p50: Summary; p99: Summary; errors: number };

export interface PresignRow {
  connections: number;
  keyframe: Side;
  /** Keyframe with KEYFRAME_STORAGE=s3 (Ceph RGW), when RGW is up. */
  keyframeS3: Side | null;
  s3VsBare: Summary | null;
  s3VsSdk: Summary | null;
  bare: { rps: Summary; p50: Summary; p99: Summary; errors: number };
  sdk: { rps: Summary; p50: Summary; p99: Summary; errors: number };
  /** Per-round ratios keyframe/bare and keyframe/sdk (req/s). */
  vsBare: Summary;
  vsSdk: Summary;
}

export interface PresignOptions {
  connections: number[];
  rounds: number;
  seconds: number;
  /** Environment for a second Keyframe in S3 mode; null when no S3 store is reachable. */
  s3Env: Record<string, string> | null;
  log: (line: string) => void;
}

/**
 * Presign throughput: Keyframe (`keyframe serve`, disk store), the bare Fastify
 * route and the SDK-plus-insert build, each in its own process, loaded one at
 * a time and interleaved round by round so that drift hits all three alike.
 */
export async function benchPresign(options: PresignOptions): Promise<{ rows: PresignRow[]; responseBytes: number }> {
  const kf = await dataDirWithKey('kf');
  const sdk = await dataDirWithKey('sdk');
  const servers: ChildServer[] = [];
  const cleanup = [kf.dataDir, sdk.dataDir];
  try {
    const keyframe = await startKeyframe('keyframe', kf.dataDir);
    servers.push(keyframe);
    const sample = await fetch(keyframe.url + '/api/s3/presign-upload', {
      method: 'POST',
      headers: { authorization: `Bearer ${kf.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'upload', contentType: 'image/png', fileName: 'reference.png' }),
    });
    const responseBytes = (await sample.text()).length;
    if (sample.status !== 200) throw new Error(`keyframe presign answered ${sample.status}`);
    const bare = await startPeer('bare fastify', 'bare-fastify.ts', { BODY_BYTES: String(responseBytes) });
    servers.push(bare);
    const sdkServer = await startPeer('sdk+insert', 'sdk-presign.ts', { KEYFRAME_DATA_DIR: sdk.dataDir });
    servers.push(sdkServer);

    const targets = [
      { id: 'bare', url: bare.url, key: 'unused' },
      { id: 'keyframe', url: keyframe.url, key: kf.key },
      { id: 'sdk', url: sdkServer.url, key: sdk.key },
    ];
    if (options.s3Env) {
      const s3 = await dataDirWithKey('kf-s3');
      cleanup.push(s3.dataDir);
      const keyframeS3 = await startKeyframe('keyframe (s3)', s3.dataDir, options.s3Env);
      servers.push(keyframeS3);
      targets.push({ id: 'keyframeS3', url: keyframeS3.url, key: s3.key });
    }
    for (const t of targets) await loadPresign(t.url, t.key, 50, 2); // warm-up (JIT, caches)

    const rows: PresignRow[] = [];
    const raw = new Map<string, LoadFigures[]>();
    for (let round = 1; round <= options.rounds; round++) {
      for (const connections of options.connections) {
        for (const t of targets) {
          const figures = await measureWhileAlive(servers, () => loadPresign(t.url, t.key, connections, options.seconds), options.log);
          const id = `${t.id}@${connections}`;
          raw.set(id, [...(raw.get(id) ?? []), figures]);
          options.log(`presign round ${round} c=${connections} ${t.id}: ${figures.rps.toFixed(0)} req/s p99 ${figures.p99} ms errors ${figures.errors + figures.non2xx}`);
        }
      }
    }
    for (const connections of options.connections) {
      const of = (id: string) => raw.get(`${id}@${connections}`)!;
      const side = (id: string) => ({
        rps: summarise(of(id).map((f) => f.rps)),
        p50: summarise(of(id).map((f) => f.p50)),
        p99: summarise(of(id).map((f) => f.p99)),
        errors: of(id).reduce((n, f) => n + f.errors + f.non2xx, 0),
      });
      const kfRuns = of('keyframe');
      const s3Runs = raw.get(`keyframeS3@${connections}`);
      rows.push({
        connections,
        keyframe: side('keyframe'),
        keyframeS3: s3Runs ? side('keyframeS3') : null,
        s3VsBare: s3Runs ? summarise(s3Runs.map((f, i) => f.rps / of('bare')[i]!.rps)) : null,
        s3VsSdk: s3Runs ? summarise(s3Runs.map((f, i) => f.rps / of('sdk')[i]!.rps)) : null,
        bare: side('bare'),
        sdk: side('sdk'),
        vsBare: summarise(kfRuns.map((f, i) => f.rps / of('bare')[i]!.rps)),
        vsSdk: summarise(kfRuns.map((f, i) => f.rps / of('sdk')[i]!.rps)),
      });
    }
    return { rows, responseBytes };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    for (const dir of cleanup) await rm(dir, { recursive: true, force: true });
  }
}
