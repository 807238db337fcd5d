import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Reading every package's sources takes seconds under turbo's parallel load on a 2-core CI machine.
    testTimeout: 60_000,
  },
});
