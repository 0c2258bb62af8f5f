import { defineConfig, type Options } from 'tsup';
import { libraryConfig, NODE_TARGET } from '../../tooling/tsup.base.ts';
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

export default defineConfig([
  // The library: node create's secret volumes, postboot and its systems, for the CLI and tests.
  libraryConfig(),
  {
    // The program shipped in the psyops-nodeboot APK: one file, every dependency inside, run by
    // plain `node` on a node that has no node_modules.
    entry: { nodeboot: 'src/main.ts' },
    outExtension: () => ({ js: '.mjs' }),
    format: ['esm'],
    target: NODE_TARGET,
    platform: 'node',
    noExternal: [/.*/],
    splitting: false,
    // Smaller to read from the RAM root and faster for node to parse under slow emulation.
    minify: true,
    esbuildPlugins: [precompiledValidators],
    metafile: true,
  },
]);
