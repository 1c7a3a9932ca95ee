import { spawn } from 'node:child_process';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { ensureBuilt } from '../helpers/build.js';
import { POSTGRES_ADMIN_URL, POSTGRES_START_COMMAND } from '../helpers/database.js';
import { REDIS_START_COMMAND, REDIS_TEST_URL, redisAnswers } from '../helpers/redis.js';
import { RGW_START_COMMAND } from '../helpers/rgw.js';
import { CLUSTER_SCRIPT, printedClusterEnv, TEST_CLUSTER_SETTINGS } from './settings.js';

/**
 * globalSetup of `npm run test:cluster`: `scripts/cluster.sh up` once for every
 * file (3 API nodes behind nginx, 2 workers, PostgreSQL, Redis, RGW), `down`
 * at the end. The tests get what `cluster.sh env` prints (inject('clusterEnv')).
 *
 * What the cluster needs and the script does not start: PostgreSQL and Redis,
 * and, when S3_ENDPOINT names one (CI's), that S3 service. Locally a missing one
 * makes every cluster test skip, loudly, naming its start command; under
 * CI=true the run fails instead. Without S3_ENDPOINT the script starts an RGW
 * of its own (installing Ceph with apt-get when it is missing).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const missing = await missingServices();
  if (missing.length > 0) {
    const lines = missing.map((m) => `!!!   ${m}`).join('\n');
    if (process.env.CI === 'true') throw new Error(`the cluster tests need (CI=true: they must run):\n${lines}`);
    console.warn(`\n!!! CLUSTER TESTS SKIPPED: the cluster needs\n${lines}\n!!! (under CI=true the run fails instead of skipping)\n`);
    project.provide('clusterEnv', null);
    return async () => {};
  }

  ensureBuilt();
  // A cluster an interrupted run left in the tests' own state dir is stopped first: every run starts afresh.
  await script(['down']);
  const started = Date.now();
  // On the PostgreSQL and Redis just probed (KEYFRAME_TEST_POSTGRES_URL, KEYFRAME_TEST_REDIS_URL, as the other suites).
  await script(['up'], { ...TEST_CLUSTER_SETTINGS, CLUSTER_POSTGRES_URL: POSTGRES_ADMIN_URL, KEYFRAME_REDIS_URL: REDIS_TEST_URL });
  console.log(`cluster up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  project.provide('clusterEnv', await printedClusterEnv(TEST_CLUSTER_SETTINGS.CLUSTER_DIR!));
  return async () => {
    await script(['down']);
  };
}

/** What is missing, each with the command that starts it. */
async function missingServices(): Promise<string[]> {
  const missing: string[] = [];
  if (!(await postgresAnswers())) missing.push(`PostgreSQL at ${new URL(POSTGRES_ADMIN_URL).host}: start it with ${POSTGRES_START_COMMAND}`);
  if (!(await redisAnswers(REDIS_TEST_URL))) missing.push(`Redis at ${REDIS_TEST_URL}: start it with ${REDIS_START_COMMAND}`);
  const s3 = process.env.S3_ENDPOINT;
  if (s3 && !(await answersHttp(s3))) missing.push(`the S3 service S3_ENDPOINT=${s3}: start it with ${RGW_START_COMMAND} (or unset S3_ENDPOINT: the cluster then starts an RGW of its own)`);
  return missing;
}

async function postgresAnswers(): Promise<boolean> {
  const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 2000 });
  client.on('error', () => {});
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

async function answersHttp(url: string): Promise<boolean> {
  try {
    await (await fetch(url, { signal: AbortSignal.timeout(3000) })).arrayBuffer();
    return true;
  } catch {
    return false;
  }
}

/** Runs cluster.sh with its progress shown (stderr) as it comes; rejects naming the exit code. */
function script(args: string[], settings: Record<string, string> = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [CLUSTER_SCRIPT, ...args], {
      env: { ...process.env, ...settings, CLUSTER_DIR: TEST_CLUSTER_SETTINGS.CLUSTER_DIR },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`scripts/cluster.sh ${args.join(' ')} exited ${code} (its output above)`))));
  });
}
