import { defineConfig, type Options } from 'tsup';
import { libraryConfig, NODE_TARGET } from '../../tooling/tsup.base.ts';
import { validatorsSource } from './src/config-validation.build.ts';

type Plugin = NonNullable<Options['esbuildPlugins']>[number];

/** The entry whose zod checks the program does not load (see precompiledValidators). */
const VALIDATORS_ENTRY = '@psyops/siteapi/validators';

/**
 * The seam: in the nodeboot program, @psyops/siteapi/validators (zod) becomes the validators Ajv
 * generates from the same schemas' JSON Schema (src/config-validation.build.ts), because loading
 * zod and compiling a schema would cost seconds at every boot under emulation. Only that exact
 * specifier is mapped; test/validators.test.ts proves both give the same verdicts.
 */
const precompiledValidators: Plugin = {
  name: 'precompiled-validators',
  setup(build) {
    build.onResolve({ filter: new RegExp(`^${VALIDATORS_ENTRY}$`) }, () => ({ path: VALIDATORS_ENTRY, namespace: 'precompiled-validators' }));
    build.onLoad({ filter: /.*/, namespace: 'precompiled-validators' }, () => ({ contents: validatorsSource(), loader: 'js' }));
  },
};

export default defineConfig([
  // The library: createNode, the state image, postboot and its systems, for the CLI and tests.
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
