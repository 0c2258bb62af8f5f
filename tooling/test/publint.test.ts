import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';
import { afterAll, describe, expect, it } from 'vitest';

// publint checks what npm users get: exports, types and files against the files pnpm packs, the
// module format of each entry, the bin. Every published package must pass with nothing to say,
// suggestions included.
const repo = join(import.meta.dirname, '..', '..');
const packagesDir = join(repo, 'packages');
const published = readdirSync(packagesDir).filter((pkg) => {
  try {
    return !JSON.parse(readFileSync(join(packagesDir, pkg, 'package.json'), 'utf8')).private;
  } catch {
    return false;
  }
});

async function lint(pkgDir: string, pack: 'pnpm' | false): Promise<string[]> {
  const { messages, pkg } = await publint({ pkgDir, level: 'suggestion', strict: true, pack });
  return messages.map((message) => `${message.type} ${message.code}: ${formatMessage(message, pkg, { color: false }) ?? message.path.join('.')}`);
}

describe('publint', () => {
  it('lints the eight published packages', () => {
    expect(published.sort()).toEqual(['apkpkg', 'cli', 'core', 'imagebuild', 'nodeboot', 'psynet', 'signing', 'siteapi']);
  });

  for (const pkg of published) {
    it(`reports nothing for @psyops/${pkg}`, async () => {
      expect(await lint(join(packagesDir, pkg), 'pnpm')).toEqual([]);
    });
  }

  it('does report a package whose exports name a file it does not have', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'psyops-publint-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(join(dir, 'dist'));
    writeFileSync(join(dir, 'dist', 'index.js'), 'export const a = 1;\n');
    writeFileSync(
      join(dir, 'package.json'),
      JSON.stringify({ name: 'broken', version: '1.0.0', type: 'module', exports: { '.': { import: './dist/index.js', types: './dist/missing.d.ts' } } }),
    );
    const messages = await lint(dir, false);
    expect(messages.some((line) => line.startsWith('error FILE_DOES_NOT_EXIST'))).toBe(true);
    expect(messages.some((line) => line.includes('EXPORTS_TYPES_SHOULD_BE_FIRST'))).toBe(true);
  });
});
