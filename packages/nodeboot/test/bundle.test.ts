import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { tempDir } from './fixtures.js';

const run = promisify(execFile);
const DIST = join(import.meta.dirname, '..', 'dist');

/**
 * What the node parses and runs at every boot: under emulation each kilobyte of JavaScript and each
 * module counts (see the README's Boot time).
 */
describe('the nodeboot bundle (dist/nodeboot.mjs, from the last build)', () => {
  it('holds none of the libraries that are slow to load: zod, age-encryption, @noble/*, Ajv', () => {
    const metafile = JSON.parse(readFileSync(join(DIST, 'metafile-esm.json'), 'utf8')) as { outputs: Record<string, { inputs: Record<string, unknown> }> };
    const output = Object.entries(metafile.outputs).find(([path]) => path.endsWith('nodeboot.mjs'));
    expect(output).toBeDefined();
    const inputs = Object.keys(output![1].inputs);
    expect(inputs).toContain('src/age-decrypt.ts');
    expect(inputs).toContain('precompiled-validators:@psyops/siteapi/validators');
    expect(
      inputs.filter((path) => /node_modules[\\/](zod|age-encryption|@noble|@scure|ajv)[\\/]|siteapi[\\/]dist[\\/](schemas|validators)/.test(path)),
    ).toEqual([]);
    const bundle = readFileSync(join(DIST, 'nodeboot.mjs'), 'utf8');
    // Every boot parses it: the node commands (apply, upgrade, write-bootmedia, update) ride along, so keep an eye on it.
    expect(bundle.length).toBeLessThan(130_000);
  });

  it('loads no http, https or TLS module before it fetches', async () => {
    // Node's own list of the built-in modules it loaded, printed as the process exits.
    const preload = join(tempDir('bundle'), 'preload.cjs');
    // biome-ignore lint/suspicious/noTemplateCurlyInString: JavaScript source written to a file
    writeFileSync(preload, "process.on('exit', () => require('node:fs').writeSync(2, `\\nLOADED ${JSON.stringify(process.moduleLoadList)}\\n`));\n");
    const result = await run(process.execPath, ['--require', preload, join(DIST, 'nodeboot.mjs'), 'status'], { timeout: 30_000 }).catch(
      (error: { stderr: string }) => error,
    );
    const loaded = JSON.parse(/LOADED (.*)/.exec(result.stderr)![1]!) as string[];
    expect(loaded).toContain('NativeModule crypto');
    expect(loaded.filter((name) => /^NativeModule (https?|tls|_http_client|_tls_wrap)$/.test(name))).toEqual([]);
  });
});
