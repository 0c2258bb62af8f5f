import { readFile } from 'node:fs/promises';
import { defineConfig, type Options } from 'tsup';
import { validatorsSource } from './src/config-validation.build.ts';

type Plugin = NonNullable<Options['esbuildPlugins']>[number];

/**
 * In the nodeboot program, src/config-validation.ts (zod) becomes the validators Ajv generates from
 * the same schemas' JSON Schema (config-validation.build.ts): no zod to load, no schema to compile at boot.
 */
const precompiledValidators: Plugin = {
  name: 'precompiled-validators',
  setup(build) {
    build.onResolve({ filter: /^\.\/config-validation\.js$/ }, (args) =>
      /[\\/]nodeboot[\\/]src[\\/]/.test(args.importer) ? { path: 'config-validation', namespace: 'precompiled-validators' } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'precompiled-validators' }, () => ({ contents: validatorsSource(), loader: 'js' }));
  },
};

/**
 * @psyops/signing looks for the optional sodium-native with createRequire at the first prehash;
 * the bundle has no node_modules, so that lookup can only fail, and a failing require costs ~2 ms
 * natively (~40 ms under emulation). The bundle goes straight to node:crypto's BLAKE2b, the
 * fallback signing takes anyway (same digest). The build fails if signing's code changes shape.
 */
const noSodiumLookup: Plugin = {
  name: 'no-sodium-lookup',
  setup(build) {
    build.onLoad({ filter: /[\\/]signing[\\/]dist[\\/]index\.js$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      const lookup = 'createRequire(import.meta.url)("sodium-native")';
      if (!source.includes(lookup)) throw new Error(`${args.path}: no ${lookup} to replace; update no-sodium-lookup in tsup.config.ts`);
      return { contents: source.replace(lookup, 'null'), loader: 'js' };
    });
  },
};

export default defineConfig([
  {
    // The library: node create's secret volumes, postboot and its systems, for the CLI and tests.
    entry: ['src/index.ts'],
    format: ['esm'],
    dts: true,
    clean: true,
    target: 'node20',
    sourcemap: true,
  },
  {
    // The program shipped in the psyops-nodeboot APK: one file, every dependency inside, run by
    // plain `node` on a node that has no node_modules.
    entry: { nodeboot: 'src/main.ts' },
    outExtension: () => ({ js: '.mjs' }),
    format: ['esm'],
    target: 'node20',
    platform: 'node',
    noExternal: [/.*/],
    splitting: false,
    // Smaller to read from the RAM root and faster for node to parse under slow emulation.
    minify: true,
    esbuildPlugins: [precompiledValidators, noSodiumLookup],
    metafile: true,
  },
]);
