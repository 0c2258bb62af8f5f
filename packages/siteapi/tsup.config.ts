import { defineConfig } from 'tsup';

export default defineConfig({
  // schemas: the document formats alone (zod only), for nodeboot's single-file bundle.
  entry: ['src/index.ts', 'src/schemas.ts'],
  format: ['esm'],
  dts: true,
  clean: true,
  target: 'node20',
  sourcemap: true,
});
