import { defineConfig } from 'tsup';
import { libraryConfig, NODE_TARGET } from '../../tooling/tsup.base.ts';

export default defineConfig([
  // The library API (runCli, workspace helpers) for programs that import @psyops/cli.
  libraryConfig(),
  {
    // The `psyops` executable, bundled with its dependencies: one file loads about 30 ms faster
    // than a tree of modules, which counts for a command run once per file to sign or verify.
    // sodium-native stays outside: it is a native addon with prebuilt binaries.
    entry: ['src/cli.ts'],
    format: ['esm'],
    target: NODE_TARGET,
    platform: 'node',
    sourcemap: true,
    noExternal: [/^(?!sodium-native$)/],
    // Bundled CommonJS dependencies (commander) call require() for Node's built-ins.
    banner: { js: "import { createRequire as psyopsCreateRequire } from 'node:module';\nconst require = psyopsCreateRequire(import.meta.url);" },
  },
]);
