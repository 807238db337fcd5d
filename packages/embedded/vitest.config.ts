import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // README examples and CLIs run in spawned Node processes; under turbo's parallel load on a 2-core CI
    // machine they take several seconds, past vitest's 5 s default.
    testTimeout: 60_000,
  },
});
