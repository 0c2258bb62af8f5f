import { defineConfig, type Options } from 'tsup';

/** The Node.js versions psyops runs on start at 22. */
export const NODE_TARGET = 'node22';

/** A package's library build: ESM + .d.ts from its entries (default `src/index.ts`). */
export function libraryConfig(entry: Options['entry'] = ['src/index.ts']): Options {
  return { entry, format: ['esm'], dts: true, clean: true, target: NODE_TARGET, sourcemap: true };
}

/** The tsup config of a package that builds only its library. */
export function defineLibrary(entry?: Options['entry']) {
  return defineConfig(libraryConfig(entry));
}
