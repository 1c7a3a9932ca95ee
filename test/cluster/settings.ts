import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from '../helpers/build.js';

/**
 * The cluster the cluster tests run on: scripts/cluster.sh, started by the
 * global set-up (global-setup.ts) with these settings: a state dir, ports,
 * database, bucket and Redis prefix of its own, so that it never touches a
 * cluster a developer runs with the script's defaults.
 */
export const CLUSTER_SCRIPT = path.join(ROOT, 'scripts/cluster.sh');

export const TEST_CLUSTER_SETTINGS: Record<string, string> = {
  CLUSTER_DIR: '/tmp/keyframe-cluster-test',
  CLUSTER_PORT: '28080',
  CLUSTER_API_NODES: '3',
  CLUSTER_WORKERS: '2',
  CLUSTER_DATABASE: 'keyframe_cluster_test',
  CLUSTER_BUCKET: 'keyframe-cluster-test',
  // A dead worker's job is taken up a few seconds after it died (the database queue's lease, BullMQ's lock).
  KEYFRAME_GENERATION_LEASE_SECONDS: '3',
  // `cluster.sh stop` waits this long (plus 5 s) for an orderly exit.
  KEYFRAME_SHUTDOWN_TIMEOUT_SECONDS: '15',
  // The lines the tests read: a worker's "shutting down" and "shut down".
  LOG_LEVEL: 'info',
};

/**
 * What `cluster.sh env` prints for the cluster in state dir `dir` (KEYFRAME_*, S3_*, CLUSTER_*),
 * evaluated by bash itself (the lines are shell-quoted) in an environment of its own.
 */
export async function printedClusterEnv(dir: string): Promise<Record<string, string>> {
  const { stdout } = await promisify(execFile)(
    'env',
    ['-i', `PATH=${process.env.PATH}`, `CLUSTER_DIR=${dir}`, 'bash', '-c', 'eval "$(bash "$0" env)" && env -0', CLUSTER_SCRIPT],
    { maxBuffer: 1024 * 1024 },
  );
  const entries = stdout
    .split('\0')
    .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as const)
    .filter(([name]) => /^(KEYFRAME_|S3_|CLUSTER_)/.test(name));
  return Object.fromEntries(entries);
}
