import { defineConfig, type Options } from 'tsup';

type Plugin = NonNullable<Options['esbuildPlugins']>[number];

/**
 * zod re-exports all its ~40 message locales (`z.locales`), 40 % of the bundle, though it only ever
 * uses English: the bundle gets English alone, less for node to read and compile at every boot.
 */
const zodEnglishOnly: Plugin = {
  name: 'zod-english-only',
  setup(build) {
    build.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]zod[\\/]/.test(args.importer) ? { path: 'zod-locales-english-only', namespace: 'zod-english-only', pluginData: args.resolveDir } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'zod-english-only' }, (args) => ({
      contents: "export { default as en } from '../locales/en.js';\n",
      resolveDir: args.pluginData as string,
      loader: 'js',
    }));
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
    esbuildPlugins: [zodEnglishOnly],
    // The optional sodium-native is loaded through createRequire at run time; the bundle falls back to node:crypto.
    banner: { js: "import { createRequire as nodebootCreateRequire } from 'node:module';\nconst require = nodebootCreateRequire(import.meta.url);" },
  },
]);
