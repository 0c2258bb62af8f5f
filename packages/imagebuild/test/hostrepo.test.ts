import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { extractPackage, loadKeysDir, readIndex, readPackage, type ApkKeyRing, type ApkPackage } from '@psyops/apkpkg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apkVersionFromDebian, buildHostRepository, EXCLUDED_MODULE_DIRS, type HostRepository } from '../src/hostrepo.js';
import { hostKernel } from './qemu-fixture.js';

const MTIME = 1_700_000_000;

describe('apkVersionFromDebian', () => {
  it('keeps the upstream numbers and the revision number', () => {
    expect(apkVersionFromDebian('1:1.35.0-4+deb12u1+b1')).toBe('1.35.0-r4');
    expect(apkVersionFromDebian('6.1.192')).toBe('6.1.192-r0');
    expect(apkVersionFromDebian('6.1.192-2')).toBe('6.1.192-r2');
    expect(apkVersionFromDebian('2.36-9+deb12u10')).toBe('2.36-r9');
    expect(() => apkVersionFromDebian('git-snapshot')).toThrow(/cannot turn the Debian version "git-snapshot"/);
  });
});

describe('buildHostRepository (from this Debian host)', () => {
  let dir: string;
  let repo: HostRepository;
  let keys: ApkKeyRing;
  const progress: string[] = [];
  const packages = new Map<string, ApkPackage>();
  const trees = new Map<string, string>();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'psyops-hostrepo-'));
    repo = await buildHostRepository({ outDir: join(dir, 'repo'), mtime: MTIME, onProgress: (line) => progress.push(line) });
    keys = await loadKeysDir(repo.keysDir);
    for (const name of readdirSync(join(repo.dir, 'x86_64')).filter((file) => file.endsWith('.apk'))) {
      const pkg = readPackage(readFileSync(join(repo.dir, 'x86_64', name)), { keys });
      packages.set(pkg.info.pkgname, pkg);
      const tree = join(dir, 'trees', pkg.info.pkgname);
      await extractPackage(pkg, tree);
      trees.set(pkg.info.pkgname, tree);
    }
  }, 900_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a signed index of the four packages, with a private key only root can read', () => {
    const index = readIndex(readFileSync(join(repo.dir, 'x86_64/APKINDEX.tar.gz')), { keys });
    expect(index.trustedBy).toMatch(/^psyops-host-[0-9a-f]+\.rsa\.pub$/);
    const entries = index.entries.map((entry) => ({ name: entry.name, version: entry.version })).sort((a, b) => a.name.localeCompare(b.name));
    expect(entries).toEqual([...repo.packages].sort((a, b) => a.name.localeCompare(b.name)));
    expect(entries.map((entry) => entry.name)).toEqual(['busybox', 'host-baselayout', 'linux-debian', 'nodejs']);
    expect(index.entries.find((entry) => entry.name === 'host-baselayout')?.depends).toEqual(['busybox']);
    for (const pkg of packages.values()) expect(pkg.trustedBy).toBe(index.trustedBy);
    const privateKey = readdirSync(repo.keysDir).find((name) => name.endsWith('.rsa'))!;
    expect(statSync(join(repo.keysDir, privateKey)).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(repo.dir))).toEqual(['keys', 'x86_64']);
    expect(progress.some((line) => /^linux-debian-.*\.apk: \d+\.\d MiB$/.test(line))).toBe(true);
  });

  it('linux-debian: the newest host kernel as vmlinuz-debian, its modules without the excluded directories, a fresh modules.dep', async () => {
    const { image, release } = await hostKernel();
    const tree = trees.get('linux-debian')!;
    expect(readFileSync(join(tree, 'boot/vmlinuz-debian')).equals(readFileSync(image))).toBe(true);
    expect(readFileSync(join(tree, 'boot/config-debian'), 'utf8')).toContain('CONFIG_VIRTIO_NET=');
    const version = packages.get('linux-debian')!.info.pkgver;
    expect(readFileSync(join(tree, 'boot/config-debian'), 'utf8')).toContain(`# Linux/x86 ${version.replace(/-r0$/, '')} Kernel Configuration`);
    const modules = join(tree, 'lib/modules', release);
    const dep = readFileSync(join(modules, 'modules.dep'), 'utf8');
    expect(dep).toMatch(/^kernel\/drivers\/net\/virtio_net\.ko: .*net_failover/m);
    expect(dep).toMatch(/^kernel\/drivers\/usb\/storage\/usb-storage\.ko:/m);
    expect(dep).toMatch(/^kernel\/fs\/ext4\/ext4\.ko:/m);
    for (const excluded of EXCLUDED_MODULE_DIRS) expect(dep).not.toContain(`${excluded}/`);
    expect(readFileSync(join(modules, 'modules.alias'), 'utf8')).toContain('virtio_net');
    // Only what is in modules.dep is shipped: nothing depends on a module left out.
    const shipped = packages.get('linux-debian')!.files.filter((file) => file.path.endsWith('.ko')).map((file) => file.path);
    expect(shipped.length).toBe(dep.trim().split('\n').length);
  });

  it('busybox: the static binary and the absolute path of every applet', () => {
    const tree = trees.get('busybox')!;
    expect(readFileSync(join(tree, 'bin/busybox')).equals(readFileSync('/bin/busybox'))).toBe(true);
    expect(statSync(join(tree, 'bin/busybox')).mode & 0o777).toBe(0o755);
    const paths = readFileSync(join(tree, 'etc/busybox-paths.d/busybox'), 'utf8').trimEnd().split('\n');
    expect(paths).toContain('/bin/sh');
    expect(paths).toContain('/sbin/init');
    expect(paths).toContain('/sbin/getty');
    expect(paths).toContain('/usr/bin/wget');
    expect(paths.every((path) => path.startsWith('/'))).toBe(true);
    expect(paths).not.toContain('/bin/busybox');
    expect(packages.get('busybox')!.info.pkgver).toMatch(/^\d+\.\d+\.\d+-r\d+$/);
  });

  it('nodejs: this Node runs from the package through the packaged loader and libraries', () => {
    const tree = trees.get('nodejs')!;
    expect(packages.get('nodejs')!.info.pkgver).toBe(`${process.version.slice(1)}-r0`);
    const output = execFileSync(
      join(tree, 'lib64/ld-linux-x86-64.so.2'),
      ['--library-path', join(tree, 'lib/x86_64-linux-gnu'), join(tree, 'usr/bin/node'), '-e', 'console.log(process.version)'],
      { encoding: 'utf8' },
    );
    expect(output.trim()).toBe(process.version);
    expect(readdirSync(join(tree, 'lib/x86_64-linux-gnu'))).toContain('libc.so.6');
  });

  it.skipIf(process.getuid?.() !== 0)('nodejs: runs chrooted in its own tree, finding its libraries where the loader looks', () => {
    const output = execFileSync('chroot', [trees.get('nodejs')!, '/usr/bin/node', '-e', 'console.log(1 + 1)'], { encoding: 'utf8' });
    expect(output.trim()).toBe('2');
  });

  it('host-baselayout: busybox init files with valid shell syntax, locked root, default runlevel links', () => {
    const tree = trees.get('host-baselayout')!;
    const files = new Map(packages.get('host-baselayout')!.files.map((file) => [file.path, file]));
    for (const script of ['etc/init.d/rcS', 'etc/init.d/rcK', 'etc/init.d/local', 'etc/init.d/hostname', 'etc/init.d/networking', 'etc/init.d/syslog', 'etc/init.d/modules', 'etc/init.d/mdev', 'usr/share/udhcpc/default.script']) {
      expect(files.get(script)?.mode, script).toBe(0o755);
      execFileSync('/bin/busybox', ['sh', '-n', join(tree, script)]);
    }
    expect(files.get('etc/shadow')?.mode).toBe(0o600);
    expect(files.get('etc/passwd')?.mode).toBe(0o644);
    expect(files.get('tmp')?.mode).toBe(0o1777);
    expect(readFileSync(join(tree, 'etc/shadow'), 'utf8')).toMatch(/^root:\*:/);
    expect(readFileSync(join(tree, 'etc/passwd'), 'utf8')).toMatch(/^root:x:0:0:root:\/root:\/bin\/sh$/m);
    const inittab = readFileSync(join(tree, 'etc/inittab'), 'utf8');
    expect(inittab).toContain('::sysinit:/etc/init.d/rcS');
    expect(inittab).toContain('::shutdown:/etc/init.d/rcK');
    expect(inittab).toMatch(/^ttyS0::respawn:\/sbin\/getty .*ttyS0/m);
    expect(inittab).toMatch(/^tty1::respawn:\/sbin\/getty .*tty1/m);
    expect(files.get('etc/runlevels/default/local')).toMatchObject({ type: 'symlink' });
    expect(packages.get('host-baselayout')!.dataEntries.find((entry) => entry.path === 'etc/runlevels/default/local')?.linkname).toBe('/etc/init.d/local');
  });

  it('the local service runs the executable *.start hooks in lexical order, as OpenRC does', () => {
    const tree = trees.get('host-baselayout')!;
    const script = readFileSync(join(tree, 'etc/init.d/local'), 'utf8').replaceAll('/etc/local.d', join(dir, 'local.d'));
    execFileSync('mkdir', ['-p', join(dir, 'local.d')]);
    const hook = (name: string, mode: number) => {
      execFileSync('sh', ['-c', `printf '#!/bin/sh\\necho ${name}\\n' > "$1" && chmod ${mode.toString(8)} "$1"`, 'sh', join(dir, 'local.d', name)]);
    };
    hook('20-second.start', 0o755);
    hook('10-first.start', 0o755);
    hook('15-not-executable.start', 0o644);
    hook('30-other.stop', 0o755);
    const output = execFileSync('/bin/busybox', ['sh', '-c', script, 'local', 'start'], { encoding: 'utf8' });
    expect(output).toBe('10-first.start\n20-second.start\n');
  });
});
