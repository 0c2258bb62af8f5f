import { createHash } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFixtureRepository, copyRepository, FIXTURE_WORLD, serveDirectory, type FixtureRepository } from '../../imagebuild/test/fixtures/repository.ts';
import { ALPINE_KEY_NAME, buildKeyedRepository, testKey, writeKeysDir } from '../../imagebuild/test/fixtures/keyed-repository.ts';
import { CLI, errorLine, psyops, tempDir, type CliResult } from './helpers.ts';

// build-iso over the small signed fixture repository (a fake kernel: this proves the build and
// its failure modes quickly; real boots of the real image are in tooling/e2e).
let fixture: FixtureRepository;
beforeAll(async () => {
  fixture = await buildFixtureRepository();
});
afterAll(() => fixture?.cleanup());

const EPOCH = '1700000000';
/**
 * The fixture's world without suidtool: the fixture's suidtool carries hello's etc/motd without
 * replacing hello, a root the rootfs stage refuses (APK_FILE_CONFLICT, as apk does).
 */
const WORLD = FIXTURE_WORLD.filter((name) => name !== 'suidtool');
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** A workspace over the fixture repository; `image` and `repositories` override the defaults given here. */
async function workspace(overrides: { image?: Record<string, unknown>; repositories?: { url: string; keys: string }[] } = {}): Promise<string> {
  const dir = join(tempDir('build-iso'), 'ws');
  const init = await psyops(['init', '--no-password', dir]);
  expect(init.exitCode, init.stderr).toBe(0);
  const configPath = join(dir, 'psyops.config.json');
  const config = JSON.parse(readFileSync(configPath, 'utf8'));
  config.repositories = overrides.repositories ?? [{ url: fixture.dir, keys: fixture.keysDir }];
  config.image = { ...config.image, world: WORLD, kernel: 'test', initramfsPackages: ['busybox'], release: 't1', ...overrides.image };
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  return dir;
}

const build = (dir: string, args: string[] = [], env: Record<string, string> = {}) =>
  psyops(['build-iso', ...args], { cwd: dir, env: { SOURCE_DATE_EPOCH: EPOCH, ...env } });

/** The error line of a failed build: its progress lines (one per finished stage) come first on stderr. */
const failure = (run: CliResult) =>
  errorLine({
    ...run,
    stderr: run.stderr
      .split('\n')
      .filter((line) => !line.startsWith('build-iso: '))
      .join('\n'),
  });

/** The output folder holds nothing (or does not exist): a failed build wrote nothing there. */
const outputs = (dir: string) => (existsSync(join(dir, 'out')) ? readdirSync(join(dir, 'out')) : []);

/** Stage directories being built (`<name>-<hash>.tmp-<random>`, see imagebuild's stage.ts). */
const stageTemps = (dir: string) =>
  existsSync(join(dir, 'cache', 'stages')) ? readdirSync(join(dir, 'cache', 'stages')).filter((name) => name.includes('.tmp-')) : [];

/** A workspace whose overlay is 48 MiB of noise: its apkovl stage takes a while to gzip, a moment to interrupt. */
async function slowWorkspace(): Promise<string> {
  const dir = await workspace();
  mkdirSync(join(dir, 'overlay', 'srv'), { recursive: true });
  writeFileSync(join(dir, 'overlay', 'srv', 'noise.bin'), randomBytes(48 * 2 ** 20));
  return dir;
}

/** Starts build-iso in its own process group (as a shell runs a job) and waits until the apkovl stage is being built. */
async function buildUntilApkovl(dir: string) {
  const child = execa(process.execPath, [CLI, 'build-iso'], {
    cwd: dir,
    env: { SOURCE_DATE_EPOCH: EPOCH, PSYOPS_WORKSPACE: undefined, PSYOPS_MINISIGN_PASSWORD: undefined },
    detached: true,
    reject: false,
    timeout: 120_000,
  });
  let ended = false;
  void child.finally(() => {
    ended = true;
  });
  for (let i = 0; i < 6000 && !ended && !stageTemps(dir).some((name) => name.startsWith('apkovl-')); i++) await sleep(5);
  expect(
    stageTemps(dir).some((name) => name.startsWith('apkovl-')),
    'the apkovl stage was never seen being built',
  ).toBe(true);
  return { child }; // not the subprocess itself: an async function would wait for it
}

describe('psyops build-iso', () => {
  it('builds a signed ISO and manifest; a cached rebuild gives the same bytes; the real minisign verifies it', async () => {
    const dir = await workspace();
    const first = await build(dir);
    expect(first.exitCode, first.stderr + first.stdout).toBe(0);
    const iso = join(dir, 'out', 'psyopsOS-t1-x86_64.iso');
    expect(first.stdout.split('\n')[0]).toBe(iso);
    // Piped: one line per stage (the root and boot chains run side by side, so their lines interleave).
    const stages = first.stderr
      .split('\n')
      .filter((line) => line.startsWith('build-iso: '))
      .map((line) => /^build-iso: ([a-z-]+)/.exec(line)![1]);
    expect(stages.slice(0, 3)).toEqual(['indexes', 'resolve', 'fetch']);
    expect(stages.slice(-3)).toEqual(['apkovl', 'iso', 'sign']);
    expect([...stages].sort()).toEqual([
      'apkovl',
      'boot-packages',
      'efi',
      'fetch',
      'indexes',
      'initramfs',
      'iso',
      'modloop',
      'resolve',
      'root-image',
      'rootfs',
      'sign',
    ]);
    expect(stages.indexOf('rootfs')).toBeLessThan(stages.indexOf('root-image'));
    expect(stages.indexOf('boot-packages')).toBeLessThan(stages.indexOf('modloop'));
    expect(readdirSync(join(dir, 'out')).sort()).toEqual(['psyopsOS-t1-x86_64.iso', 'psyopsOS-t1-x86_64.iso.minisig', 'psyopsOS-t1-x86_64.json']);

    const manifest = JSON.parse(readFileSync(join(dir, 'out', 'psyopsOS-t1-x86_64.json'), 'utf8'));
    expect(manifest).toMatchObject({
      filename: 'psyopsOS-t1-x86_64.iso',
      version: 't1',
      arch: 'x86_64',
      volumeId: 'psyopsos-boot t1 x86_64',
      sha256: sha256(iso),
      alpine: 'none',
    });
    expect(manifest.packages.map((p: { name: string }) => p.name)).toEqual(['baselayout', 'busybox', 'hello']);
    expect(manifest.bootPackages.map((p: { name: string; version: string }) => `${p.name}-${p.version}`)).toEqual([
      'busybox-1.36.1-r0',
      expect.stringMatching(/^linux-test-/),
    ]);

    const verified = await execa('minisign', ['-V', '-p', join(dir, 'keys', 'minisign.pub'), '-m', iso], { reject: false, timeout: 60_000 });
    expect(verified.exitCode, String(verified.stderr)).toBe(0);
    expect(String(verified.stdout)).toContain(`Trusted comment: filename=psyopsOS-t1-x86_64.iso version=t1 kernel=${manifest.kernel} alpine=none`);

    const again = await build(dir, ['--out', join(dir, 'again')]);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stderr).toContain('build-iso: iso (cached)');
    expect(sha256(join(dir, 'again', 'psyopsOS-t1-x86_64.iso'))).toBe(sha256(iso));
  });

  it('builds byte-identical images from scratch in two caches for the same SOURCE_DATE_EPOCH', async () => {
    const dir = await workspace();
    for (const name of ['a', 'b']) {
      const run = await build(dir, ['--cache-dir', join(dir, `cache-${name}`), '--out', join(dir, `out-${name}`)]);
      expect(run.exitCode, run.stderr).toBe(0);
      expect(run.stderr).not.toContain('(cached)');
    }
    expect(sha256(join(dir, 'out-a', 'psyopsOS-t1-x86_64.iso'))).toBe(sha256(join(dir, 'out-b', 'psyopsOS-t1-x86_64.iso')));
  });

  it('refuses the rpi flavor with a "not yet" error', async () => {
    const dir = await workspace({ image: { flavor: 'rpi' } });
    const run = await build(dir);
    expect(failure(run)).toEqual({ code: 'BAD_IMAGE_CONFIG', message: expect.stringContaining('"rpi" (aarch64) is not supported yet') });
    expect(outputs(dir)).toEqual([]);
  });

  it('reports an unsatisfiable world and writes nothing', async () => {
    const dir = await workspace({ image: { world: ['hello', 'no-such-package'] } });
    const run = await build(dir);
    expect(failure(run)).toMatchObject({ code: 'UNSATISFIABLE', message: expect.stringContaining('no-such-package') });
    expect(outputs(dir)).toEqual([]);
  });

  it('refuses an index signed by a key it does not trust', async () => {
    const untrusted = tempDir('untrusted-keys');
    const dir = await workspace({ repositories: [{ url: fixture.dir, keys: untrusted }] });
    const run = await build(dir);
    expect(failure(run)).toMatchObject({ code: 'APK_UNTRUSTED', message: expect.stringContaining(fixture.dir) });
    expect(outputs(dir)).toEqual([]);
  });

  it('fails cleanly when a package cannot be downloaded: no output, nothing partial in the cache', async () => {
    const served = tempDir('served-repo');
    await copyRepository(fixture.dir, served);
    const hello = readdirSync(join(served, 'x86_64')).find((name) => name.startsWith('hello-'))!;
    rmSync(join(served, 'x86_64', hello));
    const server = await serveDirectory(served);
    try {
      const dir = await workspace({ repositories: [{ url: server.url, keys: fixture.keysDir }] });
      const run = await build(dir);
      expect(failure(run)).toMatchObject({ code: 'APK_FETCH_FAILED', message: expect.stringContaining(hello) });
      expect(outputs(dir)).toEqual([]);
      expect(readdirSync(join(dir, 'cache', 'packages')).filter((name) => !name.endsWith('.apk'))).toEqual([]);
      const offline = await build(dir, ['--offline']);
      expect(failure(offline).code).toBe('APK_FETCH_FAILED');
    } finally {
      await server.close();
    }
  });

  it('names the Debian package of a missing host tool', async () => {
    const dir = await workspace();
    const run = await execa(process.execPath, [CLI, 'build-iso'], {
      cwd: dir,
      env: { PATH: '/nonexistent' },
      extendEnv: false,
      reject: false,
      timeout: 60_000,
    });
    expect(errorLine({ exitCode: run.exitCode ?? -1, stdout: String(run.stdout), stderr: String(run.stderr) })).toEqual({
      code: 'MISSING_TOOL',
      message: 'xorriso is not installed: install the Debian package xorriso (apt-get install xorriso)',
    });
    expect(outputs(dir)).toEqual([]);
  });

  it('names the signing key and the command that verifies the image; --json prints one object on stdout, the summary on stderr', async () => {
    const dir = await workspace();
    const human = await build(dir);
    expect(human.exitCode, human.stderr).toBe(0);
    const keyId = /public key ([0-9A-F]+)/.exec(readFileSync(join(dir, 'keys', 'minisign.pub'), 'utf8'))![1];
    expect(human.stdout).toContain(`  signed with keys/minisign.key (key id ${keyId}); verify the image with:\n`);
    const command = /^ {4}(minisign -Vm .*)$/m.exec(human.stdout)![1]!;
    expect(command).toBe('minisign -Vm out/psyopsOS-t1-x86_64.iso -p keys/minisign.pub');
    expect((await execa('sh', ['-c', command], { cwd: dir, reject: false, timeout: 60_000 })).exitCode).toBe(0);

    const json = await build(dir, ['--json']);
    expect(json.exitCode, json.stderr).toBe(0);
    expect(json.stdout.endsWith('\n') && json.stdout.trimEnd().split('\n')).toHaveLength(1);
    const result = JSON.parse(json.stdout);
    const iso = join(dir, 'out', 'psyopsOS-t1-x86_64.iso');
    expect(result).toEqual({
      iso,
      signature: `${iso}.minisig`,
      manifest: join(dir, 'out', 'psyopsOS-t1-x86_64.json'),
      release: 't1',
      arch: 'x86_64',
      size: readFileSync(iso).length,
      sha256: sha256(iso),
      keyId,
      secretKey: join(dir, 'keys', 'minisign.key'),
      publicKey: join(dir, 'keys', 'minisign.pub'),
      verify: `minisign -Vm ${iso} -p ${join(dir, 'keys', 'minisign.pub')}`,
      stages: expect.arrayContaining([{ stage: 'iso', cached: true, ms: expect.any(Number) }]),
    });
    expect(result.stages).toHaveLength(12);
    expect((await execa('sh', ['-c', result.verify], { reject: false, timeout: 60_000 })).exitCode).toBe(0);
    expect(json.stderr).toContain(`${iso}\n  `);
    expect(json.stderr).toContain('build-iso: iso (cached)');
  });

  it('on a terminal shows the running stage with its elapsed time ticking; piped, one line per finished stage', async () => {
    const dir = await workspace();
    // A live process (this test) holds the cache lock: the build waits in its lock stage, shown
    // for 2.5 s from when it says so (however long a loaded machine takes to start it).
    mkdirSync(join(dir, 'cache'), { recursive: true });
    const lock = join(dir, 'cache', '.psyops-cache.lock');
    writeFileSync(lock, JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString(), token: 'test' }));
    // script(1) runs the command on a pseudo-terminal: stdout and stderr both arrive on its stdout.
    const child = execa('script', ['-q', '-e', '-c', `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} build-iso`, '/dev/null'], {
      cwd: dir,
      env: { SOURCE_DATE_EPOCH: EPOCH, PSYOPS_WORKSPACE: undefined },
      reject: false,
      timeout: 120_000,
    });
    const release = () => rmSync(lock, { force: true });
    const fallback = setTimeout(release, 60_000); // never seen waiting: the assertions below say so
    let seen = '';
    child.stdout.on('data', function watch(chunk: Buffer) {
      seen += chunk.toString();
      if (!seen.includes('waiting for pid')) return;
      child.stdout.off('data', watch);
      clearTimeout(fallback);
      setTimeout(release, 2500);
    });
    const run = await child;
    clearTimeout(fallback);
    expect(run.exitCode, run.stdout).toBe(0);
    // What the terminal got, "erase line" spelled out: `\r<EL>` starts each redraw of the live line.
    const screen = run.stdout.replaceAll('\u001b[K', '<EL>');
    const shown = [...screen.matchAll(/\r<EL>build-iso: lock (\d+\.\d) s: 0\/1 waiting for pid (\d+)/g)];
    expect(shown.length).toBeGreaterThanOrEqual(3);
    expect(shown[0]![2]).toBe(String(process.pid));
    // The clock ticks while the stage runs, not only when it ends.
    const times = [...new Set(shown.map((match) => Number(match[1])))];
    expect(times.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...times)).toBeGreaterThanOrEqual(1.5);
    expect(run.stdout).toMatch(/build-iso: lock \(\d+\.\d s\): waited for pid \d+\r\n/);
    expect(screen).toMatch(/\r<EL>build-iso: (rootfs|boot-packages|efi) \d+\.\d s/);
    expect(run.stdout).toContain('build-iso: sign (');

    // Piped: no live line, no carriage return; one line per stage, when it ends.
    const piped = await build(dir, ['--rebuild']);
    expect(piped.exitCode, piped.stderr).toBe(0);
    expect(piped.stderr).not.toContain('\r');
    const lines = piped.stderr.trimEnd().split('\n');
    expect(lines.every((line) => /^build-iso: [a-z-]+ \((cached|\d+\.\d s)\)/.test(line))).toBe(true);
    expect(lines).toHaveLength(12);
  });

  it('Ctrl-C stops the build with one line and exit 130, leaving no stage temp directory and no output', async () => {
    const dir = await slowWorkspace();
    const { child } = await buildUntilApkovl(dir);
    // Ctrl-C on a terminal signals the whole foreground process group: psyops and the tools it runs.
    process.kill(-child.pid!, 'SIGINT');
    const run = await child;
    expect(run.exitCode, String(run.stderr)).toBe(130);
    const extra = String(run.stderr)
      .split('\n')
      .filter((line) => line !== '' && !/^build-iso: [a-z-]+ \(/.test(line));
    expect(extra).toEqual([expect.stringMatching(/^psyops: build-iso interrupted: nothing was written to .*\/out; .* \(INTERRUPTED\)$/)]);
    expect(stageTemps(dir)).toEqual([]);
    expect(outputs(dir)).toEqual([]);
    expect(readdirSync(join(dir, 'cache')).filter((name) => name.startsWith('.psyops'))).toEqual([]);
  });

  it('the next build removes the stage temp directories of a build that was killed', async () => {
    const dir = await slowWorkspace();
    const { child } = await buildUntilApkovl(dir);
    process.kill(-child.pid!, 'SIGKILL');
    expect((await child).signal).toBe('SIGKILL');
    const left = stageTemps(dir);
    expect(left.length).toBeGreaterThan(0);
    const next = await build(dir);
    expect(next.exitCode, next.stderr).toBe(0);
    expect(stageTemps(dir)).toEqual([]);
    expect(outputs(dir).sort()).toEqual(['psyopsOS-t1-x86_64.iso', 'psyopsOS-t1-x86_64.iso.minisig', 'psyopsOS-t1-x86_64.json']);
  });

  it('refuses a release tag that makes the volume id longer than 32 characters', async () => {
    const dir = await workspace();
    const run = await build(dir, ['--release', 'abcdefghijkl']);
    expect(failure(run)).toMatchObject({ code: 'BAD_IMAGE_CONFIG', message: expect.stringContaining('ISO 9660 allows 32') });
    expect(outputs(dir)).toEqual([]);
  });
});

describe('psyops build-iso: Alpine repositories, per-repository keys, --mirror, --dry-run, --offline', () => {
  /** `<root>/v3.22/main/x86_64/…`: a repository laid out as on an Alpine mirror. */
  async function mirrorOf(repository: string): Promise<string> {
    const root = tempDir('mirror');
    await copyRepository(repository, join(root, 'v3.22', 'main'));
    await copyRepository(repository, join(root, 'alpine', 'v3.22', 'main'));
    return root;
  }

  /** A workspace whose config gets `change` applied (after the fixture defaults of workspace()). */
  async function configured(change: (config: Record<string, any>) => void): Promise<string> {
    const dir = await workspace();
    const configPath = join(dir, 'psyops.config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8'));
    change(config);
    writeFileSync(configPath, JSON.stringify(config, null, 2));
    return dir;
  }

  it("a new workspace trusts Alpine's shipped keys for Alpine repositories only, and its own repository with keys/apk only", async () => {
    // The fixture repository beside each (trusted with its own keys) provides the kernel and busybox.
    const fixtureRepository = { url: fixture.dir, keys: fixture.keysDir };
    const workspaceKey = await testKey('workspace');
    const alpineLike = await testKey('impostor', ALPINE_KEY_NAME);
    const signedByWorkspace = await buildKeyedRepository(tempDir('own-signed'), workspaceKey, 'own-thing');
    const signedAlpineLike = await buildKeyedRepository(tempDir('alpine-signed'), alpineLike, 'alpine-thing');
    const mirror = await mirrorOf(signedByWorkspace);
    const server = await serveDirectory(mirror);
    try {
      // An Alpine repository (keys: @alpine by default) whose index the workspace's key signed: refused.
      const alpineDir = await configured((config) => {
        config.alpine = { mirror: server.url };
        config.repositories = [{ alpine: 'v3.22/main' }, fixtureRepository];
        config.image.world = ['own-thing'];
      });
      await writeKeysDir(join(alpineDir, 'keys', 'apk'), [workspaceKey]);
      const refused = await build(alpineDir, ['--dry-run']);
      expect(failure(refused)).toEqual({
        code: 'APK_UNTRUSTED',
        message: expect.stringMatching(
          new RegExp(
            `^repository ${server.url}/v3\\.22/main \\(trusting only the keys in .*/imagebuild/alpine-keys/x86_64\\): .*signed by ${workspaceKey.keyName}`,
          ),
        ),
      });
      // A workspace made before psyops shipped Alpine's keys (an Alpine URL with keys/apk) is told how to trust them.
      const older = await configured((config) => {
        config.repositories = [{ url: `${server.url}/alpine/v3.22/main`, keys: 'keys/apk' }, fixtureRepository];
        config.image.world = ['own-thing'];
      });
      expect(failure(await build(older, ['--dry-run']))).toEqual({
        code: 'APK_UNTRUSTED',
        message: expect.stringMatching(
          /; for an Alpine repository write \{"alpine": "v3\.22\/main"\} \(or "keys": "@alpine"\) to trust Alpine's release keys shipped with psyops$/,
        ),
      });
      // The same index as the workspace's own repository (keys/apk): accepted.
      const own = await configured((config) => {
        config.repositories = [{ url: join(mirror, 'v3.22', 'main') }, fixtureRepository];
        config.image.world = ['own-thing'];
      });
      await writeKeysDir(join(own, 'keys', 'apk'), [workspaceKey]);
      const accepted = await build(own, ['--dry-run', '--json']);
      expect(accepted.exitCode, accepted.stderr).toBe(0);
      expect(JSON.parse(accepted.stdout).packages.map((p: { name: string; repository: string }) => [p.name, p.repository])).toEqual([
        ['own-thing', join(mirror, 'v3.22', 'main')],
      ]);
      // The workspace's own repository signed by a key named like Alpine's: refused with keys/apk…
      const vice = await configured((config) => {
        config.repositories = [{ url: signedAlpineLike }, fixtureRepository];
        config.image.world = ['alpine-thing'];
      });
      await writeKeysDir(join(vice, 'keys', 'apk'), [workspaceKey]);
      expect(failure(await build(vice, ['--dry-run']))).toMatchObject({ code: 'APK_UNTRUSTED', message: expect.stringContaining(signedAlpineLike) });
      // …and as an Alpine repository the real Alpine key of that name does not verify it.
      const impostor = await configured((config) => {
        config.repositories = [{ url: signedAlpineLike, keys: '@alpine' }, fixtureRepository];
        config.image.world = ['alpine-thing'];
      });
      expect(failure(await build(impostor, ['--dry-run']))).toMatchObject({ code: 'APK_BAD_SIGNATURE', message: expect.stringContaining(signedAlpineLike) });
    } finally {
      await server.close();
    }
  });

  it('a new workspace builds from its own repository apk/ first: until it has an index, the error says how to make one', async () => {
    const closed = await serveDirectory(tempDir('closed-mirror'));
    await closed.close(); // nothing leaves the host: Alpine's repositories point at a closed local port
    const dir = await configured((config) => {
      delete config.repositories; // the defaults: apk/, then Alpine's main and community
      config.alpine = { mirror: closed.url };
    });
    const refused = failure(await build(dir, ['--dry-run']));
    expect(refused.code).toBe('FILE_NOT_FOUND');
    expect(refused.message).toContain(join(dir, 'apk', 'x86_64', 'APKINDEX.tar.gz'));
    expect(refused.message).toMatch(/the workspace's own repository has no index yet: .*"psyops apk project psyopsOS-base".*"psyops apk index apk"$/);
  });

  it('a tagged repository ({"url": …, "tag": "extra"}) serves name@extra only', async () => {
    const key = await testKey('tagged');
    const tagged = await buildKeyedRepository(tempDir('tagged'), key, 'tagged-thing');
    const keys = await writeKeysDir(tempDir('tagged-keys'), [key]);
    const dir = await configured((config) => {
      config.repositories = [
        { url: fixture.dir, keys: fixture.keysDir },
        { url: tagged, keys, tag: 'extra' },
      ];
      config.image.world = [...WORLD, 'tagged-thing@extra'];
    });
    const run = await build(dir, ['--dry-run', '--json']);
    expect(run.exitCode, run.stderr).toBe(0);
    const plan = JSON.parse(run.stdout);
    expect(plan.packages.find((p: { name: string }) => p.name === 'tagged-thing')).toMatchObject({ repository: tagged, why: 'world' });
    const configPath = join(dir, 'psyops.config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8'));
    config.image.world = [...WORLD, 'tagged-thing'];
    writeFileSync(configPath, JSON.stringify(config));
    expect(failure(await build(dir, ['--dry-run']))).toMatchObject({ message: expect.stringMatching(/tagged-thing.*@extra/) });
  });

  it('--dry-run prints the resolved set (name, version, repository, why) without fetching a package or reading the key; --json; --offline from the cached indexes', async () => {
    const mirror = await mirrorOf(fixture.dir);
    const server = await serveDirectory(mirror);
    const closed = await serveDirectory(mirror);
    await closed.close();
    const repository = `${server.url}/v3.22/main`;
    // alpine.mirror points nowhere: --mirror makes the build use the served one.
    const dir = await configured((config) => {
      config.alpine = { mirror: `${closed.url}/alpine` };
      config.repositories = [{ alpine: 'v3.22/main', keys: fixture.keysDir }];
    });
    rmSync(join(dir, 'keys', 'minisign.key')); // a dry run signs nothing
    try {
      const human = await build(dir, ['--dry-run', '--mirror', server.url]);
      expect(human.exitCode, human.stderr).toBe(0);
      const lines = human.stdout.split('\n');
      expect(lines[0]).toBe('dry run (x86_64): nothing fetched but the indexes, nothing built');
      expect(human.stdout).toContain(`  ${repository}  (5 packages; index fetched, verified with ${fixture.keysDir})\n`);
      const row = (name: string) =>
        lines
          .find((line) => line.startsWith(`  ${name} `))
          ?.trim()
          .split(/\s{2,}/);
      expect(row('hello')).toEqual(['hello', '1.0-r0', repository, 'world']);
      expect(row('busybox')).toEqual(['busybox', '1.36.1-r0', repository, 'dependency of hello']);
      expect(human.stdout).toMatch(/^boot \(2 packages: kernel and initramfs, not in the root\):\n {2}NAME/m);
      expect(human.stdout).toMatch(/^a build would download 4 of 4 packages \(\d+\.\d MiB\); the rest are in the cache$/m);
      expect(server.requests.filter((path) => path.endsWith('.apk'))).toEqual([]);
      expect(server.requests).toContain('/v3.22/main/x86_64/APKINDEX.tar.gz');
      expect(existsSync(join(dir, 'cache', 'packages'))).toBe(false);
      expect(outputs(dir)).toEqual([]);

      const json = await build(dir, ['--dry-run', '--json', '--mirror', `${server.url}/`]);
      expect(json.exitCode, json.stderr).toBe(0);
      expect(json.stdout.trimEnd().split('\n')).toHaveLength(1);
      const plan = JSON.parse(json.stdout);
      expect(plan).toMatchObject({
        dryRun: true,
        arch: 'x86_64',
        repositories: [{ url: repository, keysDir: fixture.keysDir, indexFrom: 'repository', packages: 5 }],
      });
      expect(plan.packages.map((p: Record<string, unknown>) => [p.name, p.version, p.repository, p.why, p.cached])).toEqual([
        ['baselayout', '3.4.3-r1', repository, 'world', false],
        ['busybox', '1.36.1-r0', repository, 'dependency of hello', false],
        ['hello', '1.0-r0', repository, 'world', false],
      ]);
      expect(plan.bootPackages.map((p: { name: string; why: string }) => `${p.name}: ${p.why}`).sort()).toEqual([
        'busybox: image.initramfsPackages',
        'linux-test: image.kernel',
      ]);
      expect(json.stderr).toContain('dry run (x86_64): ');
      // Without --mirror the configured (closed) mirror is used, and named.
      expect(failure(await build(dir, ['--dry-run']))).toMatchObject({
        code: 'APK_FETCH_FAILED',
        message: expect.stringContaining(`${closed.url}/alpine/v3.22/main`),
      });
    } finally {
      await server.close();
    }
    // Offline: the indexes come from the cache (the mirror is gone).
    const offline = await build(dir, ['--dry-run', '--json', '--offline', '--mirror', server.url]);
    expect(offline.exitCode, offline.stderr).toBe(0);
    const cached = JSON.parse(offline.stdout);
    expect(cached.repositories[0].indexFrom).toBe('cache');
    expect(cached.packages.map((p: { name: string }) => p.name)).toEqual(['baselayout', 'busybox', 'hello']);
    // --mirror is a usage error where it cannot apply, or is not a URL.
    const noAlpine = await workspace();
    expect(await build(noAlpine, ['--dry-run', '--mirror', server.url])).toMatchObject({ exitCode: 2 });
    expect(failure(await build(dir, ['--dry-run', '--mirror', 'mirror.example.org']))).toEqual({
      code: 'USAGE',
      message: '--mirror must be an http(s) URL, got "mirror.example.org"',
    });
  });

  it('--offline builds from the cache after one online build; a package failing its checksum is refused naming the repository, nothing half-written', async () => {
    const served = tempDir('served-repo');
    await copyRepository(fixture.dir, served);
    const server = await serveDirectory(served);
    const dir = await workspace({ repositories: [{ url: server.url, keys: fixture.keysDir }] });
    try {
      const online = await build(dir);
      expect(online.exitCode, online.stderr).toBe(0);
    } finally {
      await server.close();
    }
    const offline = await build(dir, ['--offline', '--out', join(dir, 'offline')]);
    expect(offline.exitCode, offline.stderr).toBe(0);
    expect(offline.stderr).toContain('build-iso: indexes (cached)');
    expect(sha256(join(dir, 'offline', 'psyopsOS-t1-x86_64.iso'))).toBe(sha256(join(dir, 'out', 'psyopsOS-t1-x86_64.iso')));

    // A mirror serving a changed package under the indexed name.
    const bad = tempDir('bad-repo');
    await copyRepository(fixture.dir, bad);
    const hello = join(bad, 'x86_64', 'hello-1.0-r0.apk');
    const bytes = readFileSync(hello);
    bytes[bytes.length - 30]! ^= 0xff;
    writeFileSync(hello, bytes);
    const badServer = await serveDirectory(bad);
    try {
      const fresh = await workspace({ repositories: [{ url: badServer.url, keys: fixture.keysDir }] });
      const run = await build(fresh);
      expect(failure(run)).toMatchObject({
        code: 'APK_CHECKSUM_MISMATCH',
        message: expect.stringMatching(new RegExp(`^repository ${badServer.url}: .*hello-1\\.0-r0\\.apk`)),
      });
      expect(outputs(fresh)).toEqual([]);
      const cachedPackages = readdirSync(join(fresh, 'cache', 'packages'));
      expect(cachedPackages.filter((name) => !/^[0-9a-f]{40}\.apk$/.test(name))).toEqual([]);
      // Only good files are cached, and hello is not among them.
      const goodOthers = readdirSync(join(fixture.dir, 'x86_64'))
        .filter((name) => name.endsWith('.apk') && !name.startsWith('hello-'))
        .map((name) => sha256(join(fixture.dir, 'x86_64', name)));
      for (const name of cachedPackages) expect(goodOthers).toContain(sha256(join(fresh, 'cache', 'packages', name)));
      expect(readdirSync(join(fresh, 'cache', 'indexes')).filter((name) => !name.endsWith('.APKINDEX.tar.gz'))).toEqual([]);
    } finally {
      await badServer.close();
    }
  });
});
