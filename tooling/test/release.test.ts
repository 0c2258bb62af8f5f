import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// The release goes through changesets: `pnpm changeset version` turns the changesets in
// .changeset/ into one version for every published package and their CHANGELOG.md. This runs it
// on a copy of the manifests and changesets (never on the checkout), then once more with a patch
// changeset for one package only, to show the packages are released together.
const repo = join(import.meta.dirname, '..', '..');
const scratch = mkdtempSync(join(tmpdir(), 'psyops-release-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const PUBLISHED = ['apkpkg', 'cli', 'core', 'imagebuild', 'nodeboot', 'psynet', 'signing', 'siteapi'];

interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  dependencies?: Record<string, string>;
}
const manifest = (dir: string, pkg: string): Manifest => JSON.parse(readFileSync(join(dir, 'packages', pkg, 'package.json'), 'utf8'));
const changelogHead = (dir: string, pkg: string) => /^## (.+)$/m.exec(readFileSync(join(dir, 'packages', pkg, 'CHANGELOG.md'), 'utf8'))?.[1];

const git = (args: string[]) =>
  execa('git', ['-c', 'user.name=psyops test', '-c', 'user.email=test@psyops.invalid', '-c', 'commit.gpgsign=false', ...args], {
    cwd: scratch,
    timeout: 60_000,
  });
const changeset = (args: string[]) =>
  execa('node', [join(repo, 'node_modules', '@changesets', 'cli', 'bin.js'), ...args], { cwd: scratch, timeout: 120_000, reject: false });

beforeAll(async () => {
  for (const file of ['package.json', 'pnpm-workspace.yaml']) cpSync(join(repo, file), join(scratch, file));
  cpSync(join(repo, '.changeset'), join(scratch, '.changeset'), { recursive: true });
  for (const pkg of readdirSync(join(repo, 'packages'))) {
    if (!existsSync(join(repo, 'packages', pkg, 'package.json'))) continue;
    mkdirSync(join(scratch, 'packages', pkg), { recursive: true });
    for (const file of ['package.json', 'CHANGELOG.md']) {
      if (existsSync(join(repo, 'packages', pkg, file))) cpSync(join(repo, 'packages', pkg, file), join(scratch, 'packages', pkg, file));
    }
  }
  mkdirSync(join(scratch, 'tooling'));
  cpSync(join(repo, 'tooling', 'package.json'), join(scratch, 'tooling', 'package.json'));
  // The changelog generator is resolved from the project: the checkout's installed one.
  symlinkSync(join(repo, 'node_modules'), join(scratch, 'node_modules'));
  writeFileSync(join(scratch, '.gitignore'), 'node_modules\n');
  await git(['init', '-q', '-b', 'main']);
  await git(['add', '-A']);
  await git(['commit', '-q', '-m', 'state of the checkout']);
});

describe('the release through changesets', () => {
  it('publishes the eight packages, and only those', () => {
    const published = readdirSync(join(scratch, 'packages')).filter((pkg) => !manifest(scratch, pkg).private);
    expect(published.sort()).toEqual(PUBLISHED);
    expect(JSON.parse(readFileSync(join(scratch, 'tooling', 'package.json'), 'utf8')).private).toBe(true);
  });

  it('`changeset version` gives every package one version (0.1.0 or later) and a CHANGELOG headed by it', async () => {
    // Between releases the pending changesets are versioned here; right after one, none are left.
    const pending = readdirSync(join(scratch, '.changeset')).filter((file) => file.endsWith('.md') && file !== 'README.md');
    if (pending.length > 0) {
      const run = await changeset(['version']);
      expect(run.exitCode, `${run.stderr}\n${run.stdout}`).toBe(0);
    }
    const versions = new Set(PUBLISHED.map((pkg) => manifest(scratch, pkg).version));
    expect(versions.size, [...versions].join(', ')).toBe(1);
    const [version] = versions as Set<string>;
    const [major, minor] = version!.split('.').map(Number);
    expect(major! > 0 || minor! >= 1, version).toBe(true);
    for (const pkg of PUBLISHED) {
      expect(changelogHead(scratch, pkg), `${pkg} CHANGELOG.md`).toBe(version);
      // Internal ranges stay workspace ranges: pack and publish turn them into ^<version>.
      for (const [dep, range] of Object.entries(manifest(scratch, pkg).dependencies ?? {})) {
        if (dep.startsWith('@psyops/')) expect(range, `${pkg} → ${dep}`).toBe('workspace:^');
      }
    }
    expect(readdirSync(join(scratch, '.changeset')).filter((file) => file.endsWith('.md') && file !== 'README.md')).toEqual([]);
  });

  it('releases the packages together: a patch to one package is a patch release of all', async () => {
    await git(['add', '-A']);
    await git(['commit', '-q', '--allow-empty', '-m', 'release']);
    const before = manifest(scratch, 'core').version;
    writeFileSync(join(scratch, '.changeset', 'core-only.md'), "---\n'@psyops/core': patch\n---\n\nA fix in core only.\n");
    await git(['add', '-A']);
    await git(['commit', '-q', '-m', 'a core fix']);
    const run = await changeset(['version']);
    expect(run.exitCode, `${run.stderr}\n${run.stdout}`).toBe(0);
    const [major, minor, patch] = before.split('.').map(Number);
    const next = `${major}.${minor}.${patch! + 1}`;
    for (const pkg of PUBLISHED) {
      expect(manifest(scratch, pkg).version, pkg).toBe(next);
      expect(changelogHead(scratch, pkg), `${pkg} CHANGELOG.md`).toBe(next);
    }
  });
});
