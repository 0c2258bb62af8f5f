import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Packs every publishable package the way `pnpm -r pack` does, installs the tarballs into a
// scratch project (third-party dependencies are linked from this checkout's store, so no network
// is needed) and imports them there, running each README's example as a user would.
const repo = join(import.meta.dirname, '..', '..');
const scratch = mkdtempSync(join(tmpdir(), 'psyops-pack-'));
const packs = join(scratch, 'packs');
const project = join(scratch, 'project');
const modules = join(project, 'node_modules');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Manifest {
  name: string;
  private?: boolean;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  [field: string]: unknown;
}
const packed = new Map<string, Manifest>();

beforeAll(async () => {
  mkdirSync(packs, { recursive: true });
  mkdirSync(modules, { recursive: true });
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }));
  await execa('pnpm', ['-r', '--filter', './packages/*', 'pack', '--pack-destination', packs], { cwd: repo, timeout: 120_000 });
  for (const tarball of readdirSync(packs)) {
    const name = `@psyops/${tarball.replace(/^psyops-/, '').replace(/-\d+\.\d+\.\d+\.tgz$/, '')}`;
    const target = join(modules, name);
    mkdirSync(target, { recursive: true });
    await execa('tar', ['-xzf', join(packs, tarball), '-C', target, '--strip-components=1'], { timeout: 60_000 });
    packed.set(name, JSON.parse(readFileSync(join(target, 'package.json'), 'utf8')));
  }
  // Link each third-party dependency to the version its own package resolves in this checkout
  // (pnpm's hoisted copy may be another major version pulled in by a dev tool).
  const linked = new Set<string>();
  for (const [name, manifest] of packed) {
    const packageDir = join(repo, 'packages', name.replace('@psyops/', ''));
    for (const dep of Object.keys({ ...manifest.dependencies, ...manifest.optionalDependencies })) {
      if (dep.startsWith('@psyops/') || linked.has(dep)) continue;
      const source = join(packageDir, 'node_modules', dep);
      if (!existsSync(source)) continue; // an optional dependency that did not install here
      const link = join(modules, dep);
      mkdirSync(join(link, '..'), { recursive: true });
      symlinkSync(realpathSync(source), link);
      linked.add(dep);
    }
  }
}, 180_000);

const node = (args: string[]) => execa('node', args, { cwd: project, timeout: 120_000, reject: false });

describe('published packages', () => {
  it('packs all eight packages', () => {
    expect([...packed.keys()].sort()).toEqual(['apkpkg', 'cli', 'core', 'imagebuild', 'nodeboot', 'psynet', 'signing', 'siteapi'].map((p) => `@psyops/${p}`));
  });

  it('have the fields npm needs and no workspace: ranges', () => {
    for (const [name, manifest] of packed) {
      expect(manifest.private, name).toBeUndefined();
      for (const field of ['exports', 'types', 'files', 'engines', 'version', 'description', 'license']) {
        expect(manifest[field], `${name} ${field}`).toBeDefined();
      }
      expect(JSON.stringify(manifest), name).not.toContain('workspace:');
      const target = join(modules, name);
      expect(existsSync(join(target, 'README.md')), `${name} README`).toBe(true);
      expect(existsSync(join(target, 'dist', 'index.js')), `${name} dist`).toBe(true);
      expect(existsSync(join(target, 'dist', 'index.d.ts')), `${name} types`).toBe(true);
      expect(existsSync(join(target, 'src')), `${name} ships no sources`).toBe(false);
      // Every documented subpath (`@psyops/apkpkg/format`, …) must point at files the tarball has.
      for (const [subpath, conditions] of Object.entries(manifest.exports as Record<string, string | Record<string, string>>)) {
        for (const file of typeof conditions === 'string' ? [conditions] : Object.values(conditions)) {
          expect(existsSync(join(target, file)), `${name} ${subpath} → ${file}`).toBe(true);
        }
      }
    }
  });

  it('import cleanly from a scratch project', async () => {
    for (const name of packed.keys()) {
      const result = await node(['--input-type=module', '-e', `await import(${JSON.stringify(name)});`]);
      expect(result.exitCode, `${name}: ${result.stderr}`).toBe(0);
    }
  });

  it('run the examples in their READMEs', async () => {
    const ran: string[] = [];
    for (const name of packed.keys()) {
      const readme = readFileSync(join(modules, name, 'README.md'), 'utf8');
      for (const [index, match] of [...readme.matchAll(/```js\n([\s\S]*?)```/g)].entries()) {
        const file = join(project, `${name.replace('@psyops/', '')}-example-${index}.mjs`);
        writeFileSync(file, match[1]!);
        const result = await node([file]);
        expect(result.exitCode, `${name} example ${index}: ${result.stderr}`).toBe(0);
        ran.push(`${name}: ${result.stdout.trim()}`);
      }
    }
    expect(ran).toContain('@psyops/signing: release 1\n8');
    expect(ran.some((line) => /^@psyops\/cli: \d+\.\d+\.\d+$/.test(line))).toBe(true);
  });

  it('the installed psyops binary signs and verifies', async () => {
    const cli = join(modules, '@psyops', 'cli', 'dist', 'cli.js');
    writeFileSync(join(project, 'data.txt'), 'data\n');
    expect((await node([cli, 'keygen', '-W', '-p', 'bin.pub', '-s', 'bin.key'])).exitCode).toBe(0);
    expect((await node([cli, 'sign', '-s', 'bin.key', '-m', 'data.txt'])).exitCode).toBe(0);
    const verified = await node([cli, 'verify', '-p', 'bin.pub', '-m', 'data.txt']);
    expect(verified.exitCode, verified.stderr).toBe(0);
    expect(verified.stdout).toContain('Signature and comment signature verified');
  });
});
