import { defineConfig } from 'vitest/config';

/** Settings every package's vitest.config.ts starts from. */
export const sharedVitestConfig = defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    // Real binaries and real key derivation (scrypt with 1 GiB) run here: give them room.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: scrypt at N=2^20 uses 1 GiB per derivation, so keep parallelism modest.
    maxWorkers: 2,
  },
});
