import { defineConfig } from 'vitest/config';

/**
 * `npm run test:reliability`: hostile input, hostile uploads, crashes, load and
 * auth, against real servers on loopback. Files run one at a time: the soak and
 * crash tests measure a server process and must not share the two cores with
 * another file. Every loop in these tests is bounded in count and time.
 */
export default defineConfig({
  test: {
    include: ['test/reliability/**/*.test.ts'],
    testTimeout: 150_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
    poolOptions: { forks: { maxForks: 1, minForks: 1 } },
  },
});
