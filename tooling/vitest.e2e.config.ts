import { defineConfig } from 'vitest/config';

/** End-to-end: builds the real image and boots it in QEMU (TCG). One file at a time: boots are CPU-bound. */
export default defineConfig({
  test: {
    include: ['e2e/**/*.test.ts'],
    environment: 'node',
    testTimeout: 900_000,
    hookTimeout: 1_800_000,
    fileParallelism: false,
    maxWorkers: 1,
  },
});
