import net from 'node:net';
import { defineConfig, type TestProjectInlineConfiguration } from 'vitest/config';

/**
 * `npm test`: a dialect matrix, the way the store behaviour suite runs on disk
 * and on RGW. The `sqlite` project runs every test on the embedded SQLite; the
 * `postgres` project runs every test that touches the database again on
 * PostgreSQL (KEYFRAME_TEST_DATABASE=postgres: test/helpers/database.ts gives
 * each test file, test or server a database of its own). Run one half with
 * `npx vitest run --project sqlite` (or `postgres`).
 *
 * PostgreSQL is probed once, here. Locally, when nothing answers, the postgres
 * project is left out with a loud warning; under CI=true it always runs, so
 * that its tests fail when PostgreSQL is missing.
 *
 * The reliability suite (vitest.reliability.config.ts) and the cluster tests
 * (vitest.cluster.config.ts, over scripts/cluster.sh) and the browser tests (vitest.browser.config.ts)
 * have configs of their own.
 */

/** Tests that never open a database: pure functions, fixtures, config, signing. They run once, in `sqlite`. */
const WITHOUT_DATABASE = [
  'test/cli/upload-journal.test.ts',
  'test/config.test.ts',
  'test/domain/media-fixtures.test.ts',
  'test/domain/model-registry.test.ts',
  'test/domain/object-keys.test.ts',
  'test/domain/truncation.test.ts',
  'test/domain/verification-inspection.test.ts',
  'test/runners/render-plan.test.ts',
  'test/storage/s3-presign-url.test.ts',
  'test/storage/sigv4.test.ts',
  'test/webhooks/address-guard.test.ts',
];

/** Run in the sqlite project only: tests of the SQLite files themselves, and one whose dialect does not matter. */
const SQLITE_ONLY = [
  'test/db/database-files.test.ts',
  // Moves 200 MiB per store through a throttled proxy; the records it touches are the multipart suite's, run on both.
  'test/cli/upload-resume.test.ts',
];

const POSTGRES_URL = process.env.KEYFRAME_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const POSTGRES_START_COMMAND = 'pg_ctlcluster 15 main start (as root; or: service postgresql start)';

/** Whether something accepts TCP connections at the PostgreSQL address, within 2 s. */
function reachable(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port || 5432) });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Vitest loads this file again for each project that extends it: the probe and
 * its warning happen once per run, kept on globalThis between the loads.
 */
const probed = globalThis as { keyframePostgresProbe?: Promise<boolean> };

export default defineConfig(async () => {
  const ci = process.env.CI === 'true';
  const first = probed.keyframePostgresProbe === undefined;
  probed.keyframePostgresProbe ??= reachable(POSTGRES_URL);
  const postgresUp = await probed.keyframePostgresProbe;
  const withPostgres = postgresUp || ci;
  if (!postgresUp && first) {
    const where = new URL(POSTGRES_URL);
    console.warn(
      ci
        ? `\n!!! PostgreSQL does not answer at ${where.host}: CI=true, so the postgres test project runs and fails.\n` +
            `!!! Start it with: ${POSTGRES_START_COMMAND}\n`
        : `\n!!! POSTGRESQL TESTS SKIPPED: nothing answers at ${where.host}; only the sqlite half of the dialect matrix runs.\n` +
            `!!! Start PostgreSQL with: ${POSTGRES_START_COMMAND}\n` +
            `!!! (under CI=true the postgres project runs, and fails, instead of being left out)\n`,
    );
  }

  const sqlite: TestProjectInlineConfiguration = {
    extends: true,
    test: { name: 'sqlite', env: { KEYFRAME_TEST_DATABASE: 'sqlite' } },
  };
  const postgres: TestProjectInlineConfiguration = {
    extends: true,
    test: {
      name: 'postgres',
      // Drops the databases of test processes that died before their clean-up.
      globalSetup: ['test/helpers/postgres-global-setup.ts'],
      exclude: ['test/reliability/**', 'test/cluster/**', 'test/browser/**', ...WITHOUT_DATABASE, ...SQLITE_ONLY],
      env: { KEYFRAME_TEST_DATABASE: 'postgres', KEYFRAME_TEST_POSTGRES_URL: POSTGRES_URL },
    },
  };

  return {
    test: {
      include: ['test/**/*.test.ts'],
      exclude: ['test/reliability/**', 'test/cluster/**', 'test/browser/**'],
      testTimeout: 60_000,
      hookTimeout: 120_000,
      // Two cores: more workers only fight over them. One pool serves both projects, so this bounds them together.
      poolOptions: { forks: { maxForks: 2, minForks: 1 } },
      pool: 'forks',
      projects: withPostgres ? [sqlite, postgres] : [sqlite],
    },
  };
});
