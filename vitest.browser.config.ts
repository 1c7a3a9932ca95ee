import { defineConfig } from 'vitest/config';

/**
 * `npm run test:browser`: issue 13's acceptance in headless Chromium (test/browser/): Uppy uploads
 * a 160 MiB MP4 through Keyframe on both stores. Files one at a time: each upload keeps both
 * cores busy. Needs Debian's chromium (.ci/run installs it) and the Uppy packages of
 * test/browser/uppy5 (`npm ci --prefix test/browser/uppy5`).
 */
export default defineConfig({
  test: {
    include: ['test/browser/**/*.test.ts'],
    exclude: ['**/node_modules/**'],
    testTimeout: 480_000,
    hookTimeout: 180_000,
    pool: 'forks',
    fileParallelism: false,
    poolOptions: { forks: { maxForks: 1, minForks: 1 } },
    env: { KEYFRAME_TEST_DATABASE: process.env.KEYFRAME_TEST_DATABASE || 'sqlite' },
  },
});
