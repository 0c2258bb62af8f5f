import { defineConfig } from 'tsup';

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
    // The optional sodium-native is loaded through createRequire at run time; the bundle falls back to node:crypto.
    banner: { js: "import { createRequire as nodebootCreateRequire } from 'node:module';\nconst require = nodebootCreateRequire(import.meta.url);" },
  },
]);
