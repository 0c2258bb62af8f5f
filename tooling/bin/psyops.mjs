#!/usr/bin/env node
// `pnpm psyops …` runs from the repository root; act from the directory the user typed it in,
// so relative paths and the workspace search start there.
import { existsSync } from 'node:fs';

const cli = new URL('../../packages/cli/dist/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write('psyops: the CLI is not built yet; run "bash tooling/setup.sh" or "pnpm build" first (NOT_BUILT)\n');
  process.exit(1);
}
if (process.env.INIT_CWD) process.chdir(process.env.INIT_CWD);
await import(cli.href);
