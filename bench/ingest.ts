import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { CreateBucketCommand, DeleteObjectCommand, HeadBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { curlPut } from './lib/curl.js';
import { dataDirWithKey } from './lib/keys.js';
import { startKeyframe, startPeer, withPeakRss, type ChildServer } from './lib/processes.js';
import { summarise, type Summary } from './lib/stats.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

export interface IngestResult {
  sizeMiB: number;
  /** MiB/s per peer; rgw null when Ceph RGW is not reachable. */
  keyframe: Summary;
  runtime: Summary;
  disk: Summary;
  rgw: Summary | null;
  rgwNote: string;
  keyframeRssGrowthMiB: Summary;
  runtimeRssGrowthMiB: Summary;
  vsRuntime: Summary;
  vsDisk: Summary;
  vsRgw: Summary | null;
}

export interface IngestOptions {
  sizeMiB: number;
  rounds: number;
  s3Endpoint: string;
  log: (line: string) => void;
}

/**
 * Upload ingest of one large video through the embedded store, by curl, next to
 * the disk (dd with fsync), a bare node:http + SHA-256 handler, and Ceph RGW
 * when it is up; peak RSS growth of the servers is sampled from /proc.
 */
export async function benchIngest(options: IngestOptions): Promise<IngestResult> {
  const work = await mkdtemp(path.join(tmpdir(), 'keyframe-bench-ingest-'));
  const source = path.join(work, 'source.bin');
  await run('dd', ['if=/dev/urandom', `of=${source}`, 'bs=1M', `count=${options.sizeMiB}`, 'status=none']);
  const kf = await dataDirWithKey('ingest');
  const servers: ChildServer[] = [];
  const rgw = await openRgw(options.s3Endpoint);
  try {
    const keyframe = await startKeyframe('keyframe', kf.dataDir);
    servers.push(keyframe);
    const bare = await startPeer('bare ingest', 'bare-ingest.ts', { BENCH_DIR: path.join(work, 'bare') });
    servers.push(bare);

    const runs = { keyframe: [] as number[], runtime: [] as number[], disk: [] as number[], rgw: [] as number[] };
    const rss = { keyframe: [] as number[], runtime: [] as number[] };
    for (let round = 1; round <= options.rounds; round++) {
      // Keyframe: presign a video, PUT it through upload_url.
      const presign = await fetch(keyframe.url + '/api/s3/presign-upload', {
        method: 'POST',
        headers: { authorization: `Bearer ${kf.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ kind: 'upload', contentType: 'video/mp4' }),
      });
      const { upload_url: uploadUrl } = (await presign.json()) as { upload_url: string };
      const k = await sampledPut(keyframe.pid, () => curlPut(uploadUrl, source, 'video/mp4'));
      if (k.status !== 200) throw new Error(`keyframe upload answered ${k.status}`);
      runs.keyframe.push(options.sizeMiB / k.seconds);
      rss.keyframe.push(k.rssGrowth / MiB);

      const b = await sampledPut(bare.pid, () => curlPut(bare.url + '/upload', source, 'video/mp4'));
      if (b.status !== 200) throw new Error(`bare ingest answered ${b.status}`);
      runs.runtime.push(options.sizeMiB / b.seconds);
      rss.runtime.push(b.rssGrowth / MiB);

      const ddStart = process.hrtime.bigint();
      await run('dd', ['if=/dev/zero', `of=${path.join(work, 'dd.bin')}`, 'bs=1M', `count=${options.sizeMiB}`, 'conv=fsync', 'status=none']);
      runs.disk.push(options.sizeMiB / (Number(process.hrtime.bigint() - ddStart) / 1e9));
      await rm(path.join(work, 'dd.bin'), { force: true });

      if (rgw.client) {
        const key = `bench/round-${round}.mp4`;
        const url = await getSignedUrl(rgw.client, new PutObjectCommand({ Bucket: rgw.bucket, Key: key, ContentType: 'video/mp4' }), {
          expiresIn: 600,
        });
        const r = await curlPut(url, source, 'video/mp4');
        if (r.status === 200) runs.rgw.push(options.sizeMiB / r.seconds);
        else options.log(`rgw PUT answered ${r.status}`);
        await rgw.client.send(new DeleteObjectCommand({ Bucket: rgw.bucket, Key: key })).catch(() => undefined);
      }
      options.log(
        `ingest round ${round}: keyframe ${runs.keyframe.at(-1)!.toFixed(0)} MiB/s, runtime ${runs.runtime.at(-1)!.toFixed(0)}, ` +
          `disk ${runs.disk.at(-1)!.toFixed(0)}, rgw ${rgw.client ? (runs.rgw.at(-1)?.toFixed(0) ?? 'failed') : 'not up'}`,
      );
    }
    const ratio = (a: number[], b: number[]) => summarise(a.map((v, i) => v / b[i]!));
    const rgwOk = runs.rgw.length === runs.keyframe.length;
    return {
      sizeMiB: options.sizeMiB,
      keyframe: summarise(runs.keyframe),
      runtime: summarise(runs.runtime),
      disk: summarise(runs.disk),
      rgw: rgwOk ? summarise(runs.rgw) : null,
      rgwNote: rgw.note,
      keyframeRssGrowthMiB: summarise(rss.keyframe),
      runtimeRssGrowthMiB: summarise(rss.runtime),
      vsRuntime: ratio(runs.keyframe, runs.runtime),
      vsDisk: ratio(runs.keyframe, runs.disk),
      vsRgw: rgwOk ? ratio(runs.keyframe, runs.rgw) : null,
    };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await rm(work, { recursive: true, force: true });
    await rm(kf.dataDir, { recursive: true, force: true });
  }
}

/** A PUT and the server's peak RSS growth while it ran. */
async function sampledPut(pid: number, put: () => Promise<{ status: number; seconds: number }>) {
  const { result, rssGrowth } = await withPeakRss(pid, put);
  return { ...result, rssGrowth };
}

/** An S3 client for Ceph RGW at `endpoint`, or a note saying why that row is skipped. */
async function openRgw(endpoint: string): Promise<{ client: S3Client | null; bucket: string; note: string }> {
  const bucket = process.env.S3_BUCKET ?? 'keyframe-bench';
  const client = new S3Client({
    endpoint,
    region: process.env.S3_REGION ?? 'us-east-1',
    forcePathStyle: true,
    credentials: {
      accessKeyId: process.env.S3_ACCESS_KEY_ID ?? 'keyframeaccesskey',
      secretAccessKey: process.env.S3_SECRET_ACCESS_KEY ?? 'keyframesecretkey0123456789',
    },
  });
  try {
    await fetch(endpoint, { signal: AbortSignal.timeout(2000) });
  } catch {
    return { client: null, bucket, note: `Ceph RGW not reachable at ${endpoint} (start it with scripts/ceph-rgw.sh)` };
  }
  try {
    await client.send(new HeadBucketCommand({ Bucket: bucket })).catch(() => client.send(new CreateBucketCommand({ Bucket: bucket })));
    return { client, bucket, note: `Ceph RGW at ${endpoint}, bucket ${bucket}` };
  } catch (err) {
    return { client: null, bucket, note: `Ceph RGW at ${endpoint} refused the bench bucket: ${(err as Error).name}` };
  }
}
