import { defineConfig } from 'vitest/config';

/**
 * `npm run test:cluster`: the cluster on one machine (scripts/cluster.sh: 3 API
 * nodes behind nginx, 2 workers, PostgreSQL, Redis, Ceph RGW), started once by
 * the global set-up and stopped at the end. Files run one at a time: they
 * share the cluster, and some stop, kill and restart its processes (each puts
 * back what it took away). Every loop is bounded in count and time.
 */
export default defineConfig({
  test: {
    include: ['test/cluster/**/*.test.ts'],
    globalSetup: ['test/cluster/global-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: false,
    poolOptions: { forks: { maxForks: 1, minForks: 1 } },
  },
});
