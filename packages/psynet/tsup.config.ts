import { defineConfig } from 'tsup';

export default defineConfig({
  // nebula-defaults: its own entry, so nodeboot's bundle takes it without psynet's YAML library.
  entry: ['src/index.ts', 'src/nebula-defaults.ts'],
  format: ['esm'],
  dts: true,
  clean: true,
  target: 'node20',
  sourcemap: true,
});
