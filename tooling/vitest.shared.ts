import { defineConfig } from 'vitest/config';

/** Settings every package's vitest.config.ts starts from. */
export const sharedVitestConfig = defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    // Real binaries and real key derivation (scrypt with 1 GiB) run here, several packages at once
    // on two cores in CI: give them room (each external process has its own timeout too).
    testTimeout: 180_000,
    hookTimeout: 180_000,
    // Two cores: scrypt at N=2^20 uses 1 GiB per derivation, so keep parallelism modest.
    maxWorkers: 2,
  },
});
