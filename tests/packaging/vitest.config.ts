import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Packing twelve packages and an npm install from the registry take a minute or two on a 2-core CI machine.
    testTimeout: 300_000,
    hookTimeout: 600_000,
  },
});
