import { defineConfig } from 'vitest/config';

// Browser tests: real Chromium (playwright-core) against the real Rust server.
export default defineConfig({
  test: {
    include: ['test/browser/**/*.test.ts'],
    environment: 'node',
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 900_000,
  },
});
