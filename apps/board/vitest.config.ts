import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 60_000,
    // The browser tests share the one Chromium and the CPU with the in-page training: one file at a time.
    fileParallelism: false,
  },
});
