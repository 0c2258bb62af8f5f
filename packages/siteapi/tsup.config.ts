import { defineConfig } from 'tsup';

export default defineConfig({
  // schemas: the document formats alone (zod only); names: the name rules without zod, for nodeboot's single-file bundle.
  entry: ['src/index.ts', 'src/schemas.ts', 'src/names.ts'],
  format: ['esm'],
  dts: true,
  clean: true,
  target: 'node20',
  sourcemap: true,
});
