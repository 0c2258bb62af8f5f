import { createHash } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFixtureRepository, copyRepository, FIXTURE_WORLD, serveDirectory, type FixtureRepository } from '../../imagebuild/test/fixtures/repository.ts';
import { CLI, errorLine, psyops, tempDir, type CliResult } from './helpers.ts';

// build-iso over the small signed fixture repository (a fake kernel: this proves the build and
// its failure modes quickly; real boots of the real image are in tooling/e2e).
let fixture: FixtureRepository;
beforeAll(async () => {
  fixture = await buildFixtureRepository();
});
afterAll(() => fixture?.cleanup());

const EPOCH = '1700000000';
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** A workspace over the fixture repository; `image` and `repositories` override the defaults given here. */
async function workspace(overrides: { image?: Record<string, unknown>; repositories?: { url: string; keys: string }[] } = {}): Promise<string> {
  const dir = join(tempDir('build-iso'), 'ws');
  const init = await psyops(['init', '--no-password', dir]);
  expect(init.exitCode, init.stderr).toBe(0);
  const configPath = join(dir, 'psyops.config.json');
  const config = JSON.parse(readFileSync(configPath, 'utf8'));
  config.repositories = overrides.repositories ?? [{ url: fixture.dir, keys: fixture.keysDir }];
  config.image = { ...config.image, world: FIXTURE_WORLD, kernel: 'test', initramfsPackages: ['busybox'], release: 't1', ...overrides.image };
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
    expect(manifest.packages.map((p: { name: string }) => p.name)).toEqual(['baselayout', 'busybox', 'hello', 'suidtool']);
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
    // A live process (this test) holds the cache lock for two seconds: the build waits in its lock stage.
    mkdirSync(join(dir, 'cache'), { recursive: true });
    const lock = join(dir, 'cache', '.psyops-cache.lock');
    writeFileSync(lock, JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString(), token: 'test' }));
    setTimeout(() => rmSync(lock), 2500);
    // script(1) runs the command on a pseudo-terminal: stdout and stderr both arrive on its stdout.
    const run = await execa('script', ['-q', '-e', '-c', `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} build-iso`, '/dev/null'], {
      cwd: dir,
      env: { SOURCE_DATE_EPOCH: EPOCH, PSYOPS_WORKSPACE: undefined },
      reject: false,
      timeout: 120_000,
    });
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
