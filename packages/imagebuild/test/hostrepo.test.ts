import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { extractPackage, loadKeysDir, readIndex, readPackage, resolve, type ApkKeyRing, type ApkPackage } from '@psyops/apkpkg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareDefaultImage } from '../src/default-image.js';
import {
  apkVersionFromDebian,
  buildHostRepository,
  EXCLUDED_MODULE_DIRS,
  isHostRepositoryCurrent,
  PINNED_NODE,
  pinnedNodeBinary,
  type HostRepository,
} from '../src/hostrepo.js';
import { bootInQemu } from '../src/qemu.js';
import { hostKernel, writeInitramfs } from './qemu-fixture.js';

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
    // Where prepareDefaultImage looks for it in its home.
    repo = await buildHostRepository({ outDir: join(dir, 'home/host-repo'), mtime: MTIME, onProgress: (line) => progress.push(line) });
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

  it('writes a signed index of the seven packages, with a private key only root can read, and records what it was built from', async () => {
    const index = readIndex(readFileSync(join(repo.dir, 'x86_64/APKINDEX.tar.gz')), { keys });
    expect(index.trustedBy).toMatch(/^psyops-host-[0-9a-f]+\.rsa\.pub$/);
    const entries = index.entries.map((entry) => ({ name: entry.name, version: entry.version })).sort((a, b) => a.name.localeCompare(b.name));
    expect(entries).toEqual([...repo.packages].sort((a, b) => a.name.localeCompare(b.name)));
    expect(entries.map((entry) => entry.name)).toEqual(['busybox', 'host-baselayout', 'linux-debian', 'minisign', 'nebula', 'nodejs', 'openssh']);
    expect(index.entries.find((entry) => entry.name === 'host-baselayout')?.depends).toEqual(['busybox']);
    // OpenRC's commands, as Alpine's openrc provides them: psyopsOS-base depends on them.
    expect(index.entries.find((entry) => entry.name === 'host-baselayout')?.provides).toEqual(['cmd:openrc-run=1.2.0-r0', 'cmd:rc-update=1.2.0-r0']);
    expect(index.entries.find((entry) => entry.name === 'busybox')?.provides).toEqual(['/bin/sh']);
    // The C library and its loader come from nodejs: no file is in two packages.
    expect(index.entries.find((entry) => entry.name === 'openssh')?.depends).toEqual(['nodejs']);
    expect(index.entries.find((entry) => entry.name === 'nebula')?.depends).toEqual(['nodejs']);
    const owners = new Map<string, string>();
    for (const pkg of packages.values()) {
      for (const file of pkg.files.filter((entry) => entry.type !== 'dir')) {
        expect(owners.get(file.path), `${file.path} in ${pkg.info.pkgname}`).toBeUndefined();
        owners.set(file.path, pkg.info.pkgname);
      }
    }
    for (const pkg of packages.values()) expect(pkg.trustedBy).toBe(index.trustedBy);
    const privateKey = readdirSync(repo.keysDir).find((name) => name.endsWith('.rsa'))!;
    expect(statSync(join(repo.keysDir, privateKey)).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(repo.dir)).sort()).toEqual(['host-inputs.sha256', 'keys', 'x86_64']);
    expect(await isHostRepositoryCurrent(repo.dir)).toBe(true);
    expect(await isHostRepositoryCurrent(join(repo.dir, 'keys'))).toBe(false);
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
    const shipped = packages
      .get('linux-debian')!
      .files.filter((file) => file.path.endsWith('.ko'))
      .map((file) => file.path);
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

  it('nodejs: the pinned official build runs from the package through the packaged loader and libraries', async () => {
    const tree = trees.get('nodejs')!;
    expect(packages.get('nodejs')!.info.pkgver).toBe(`${PINNED_NODE.version}-r0`);
    expect(readFileSync(join(tree, 'usr/bin/node')).equals(readFileSync(await pinnedNodeBinary()))).toBe(true);
    const output = execFileSync(
      join(tree, 'lib64/ld-linux-x86-64.so.2'),
      ['--library-path', join(tree, 'lib/x86_64-linux-gnu'), join(tree, 'usr/bin/node'), '-e', 'console.log(process.version)'],
      { encoding: 'utf8' },
    );
    expect(output.trim()).toBe(`v${PINNED_NODE.version}`);
    expect(readdirSync(join(tree, 'lib/x86_64-linux-gnu'))).toContain('libc.so.6');
  });

  /** nodejs's loader with `args`, finding libraries in the trees of `name` and nodejs only. */
  const packagedLoader = (name: string, args: string[]) => {
    const roots = [trees.get(name)!, trees.get('nodejs')!];
    const libraryPath = roots.flatMap((root) => [join(root, 'lib/x86_64-linux-gnu'), join(root, 'usr/lib/x86_64-linux-gnu')]).join(':');
    return execFileSync(join(trees.get('nodejs')!, 'lib64/ld-linux-x86-64.so.2'), ['--library-path', libraryPath, ...args], { encoding: 'utf8' });
  };
  const runPackaged = (name: string, program: string, args: string[]) => packagedLoader(name, [join(trees.get(name)!, program), ...args]);

  it('openssh: sshd, ssh and ssh-keygen with every library they load in the openssh and nodejs trees', () => {
    const tree = trees.get('openssh')!;
    expect(packages.get('openssh')!.info.pkgver).toMatch(/^\d+\.\d+-r\d+$/);
    expect(readFileSync(join(tree, 'usr/sbin/sshd')).equals(readFileSync('/usr/sbin/sshd'))).toBe(true);
    expect(statSync(join(tree, 'usr/sbin/sshd')).mode & 0o777).toBe(0o755);
    const listed = packagedLoader('openssh', ['--list', join(tree, 'usr/sbin/sshd')]);
    const paths = [...listed.matchAll(/=>\s*(\S+)/g)].map((match) => match[1]!);
    expect(paths).toContain(join(tree, 'lib/x86_64-linux-gnu/libcrypto.so.3'));
    for (const path of paths) expect(path.startsWith(tree) || path.startsWith(trees.get('nodejs')!), path).toBe(true);
    // Its init script: the sshd service exists only with sshd.
    expect(packages.get('openssh')!.files.find((file) => file.path === 'etc/init.d/sshd')?.mode).toBe(0o755);
    execFileSync('/bin/busybox', ['sh', '-n', join(tree, 'etc/init.d/sshd')]);
    expect(packages.get('host-baselayout')!.files.map((file) => file.path)).not.toContain('etc/init.d/sshd');
    const key = join(dir, 'packaged-host-key');
    runPackaged('openssh', 'usr/bin/ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'hostrepo-test', '-f', key]);
    expect(runPackaged('openssh', 'usr/bin/ssh-keygen', ['-l', '-f', `${key}.pub`])).toMatch(/^256 SHA256:\S+ hostrepo-test \(ED25519\)$/m);
    // The client, so an operator on one node reaches the others: the host's, running on the packaged libraries.
    expect(readFileSync(join(tree, 'usr/bin/ssh')).equals(readFileSync('/usr/bin/ssh'))).toBe(true);
    const client = spawnSync(join(trees.get('nodejs')!, 'lib64/ld-linux-x86-64.so.2'), [
      '--library-path',
      [trees.get('openssh')!, trees.get('nodejs')!].flatMap((root) => [join(root, 'lib/x86_64-linux-gnu'), join(root, 'usr/lib/x86_64-linux-gnu')]).join(':'),
      join(tree, 'usr/bin/ssh'),
      '-V',
    ]);
    expect([client.status, client.stderr.toString()]).toEqual([0, expect.stringMatching(/^OpenSSH_\d+\.\d+/)]);
    expect(packages.get('openssh')!.info.pkgdesc).toContain('client (ssh)');
  });

  it('nebula: the host binary, runnable with the C library of nodejs', () => {
    expect(readFileSync(join(trees.get('nebula')!, 'usr/bin/nebula')).equals(readFileSync('/usr/bin/nebula'))).toBe(true);
    expect(packages.get('nebula')!.files.filter((file) => file.path.endsWith('.so') || file.path.includes('.so.'))).toEqual([]);
    expect(packages.get('nebula')!.files.find((file) => file.path === 'etc/init.d/nebula')?.mode).toBe(0o755);
    execFileSync('/bin/busybox', ['sh', '-n', join(trees.get('nebula')!, 'etc/init.d/nebula')]);
    const version = runPackaged('nebula', 'usr/bin/nebula', ['-version']);
    expect(version).toMatch(/^Version: \d+\.\d+\.\d+/);
    expect(packages.get('nebula')!.info.pkgver).toMatch(new RegExp(`^${/^Version: (\S+)/.exec(version)![1]!.replaceAll('.', '\\.')}-r\\d+$`));
  });

  it('minisign: the host binary and libsodium, no init script; it verifies a signature the host minisign made', () => {
    const tree = trees.get('minisign')!;
    expect(readFileSync(join(tree, 'usr/bin/minisign')).equals(readFileSync('/usr/bin/minisign'))).toBe(true);
    expect(packages.get('minisign')!.files.some((file) => /^(usr\/)?lib\/x86_64-linux-gnu\/libsodium\.so\./.test(file.path))).toBe(true);
    expect(packages.get('minisign')!.files.filter((file) => file.path.startsWith('etc/'))).toEqual([]);
    const key = join(dir, 'minisign-test');
    execFileSync('minisign', ['-G', '-W', '-p', `${key}.pub`, '-s', `${key}.key`], { stdio: 'ignore' });
    writeFileSync(`${key}.txt`, 'signed on the host\n');
    execFileSync('minisign', ['-S', '-s', `${key}.key`, '-m', `${key}.txt`], { stdio: 'ignore' });
    expect(runPackaged('minisign', 'usr/bin/minisign', ['-V', '-p', `${key}.pub`, '-m', `${key}.txt`])).toMatch(/Signature and comment signature verified/);
  });

  it.skipIf(process.getuid?.() !== 0)('nodejs: runs chrooted in its own tree, finding its libraries where the loader looks', () => {
    const output = execFileSync('/usr/sbin/chroot', [trees.get('nodejs')!, '/usr/bin/node', '-e', 'console.log(1 + 1)'], {
      encoding: 'utf8',
      env: { PATH: '/usr/bin:/bin' },
    });
    expect(output.trim()).toBe('2');
  });

  it('host-baselayout: busybox init files with valid shell syntax, locked root, default runlevel links', () => {
    const tree = trees.get('host-baselayout')!;
    const files = new Map(packages.get('host-baselayout')!.files.map((file) => [file.path, file]));
    for (const script of [
      'sbin/openrc-run',
      'sbin/rc-update',
      'etc/init.d/rcS',
      'etc/init.d/rcK',
      'etc/init.d/local',
      'etc/init.d/hostname',
      'etc/init.d/networking',
      'etc/init.d/syslog',
      'etc/init.d/modules',
      'etc/init.d/mdev',
      'usr/share/udhcpc/default.script',
    ]) {
      expect(files.get(script)?.mode, script).toBe(0o755);
      execFileSync('/bin/busybox', ['sh', '-n', join(tree, script)]);
    }
    expect(files.get('etc/shadow')?.mode).toBe(0o600);
    expect(files.get('etc/passwd')?.mode).toBe(0o644);
    expect(files.get('tmp')?.mode).toBe(0o1777);
    expect(readFileSync(join(tree, 'etc/shadow'), 'utf8')).toMatch(/^root:\*:/);
    expect(readFileSync(join(tree, 'etc/passwd'), 'utf8')).toMatch(/^root:x:0:0:root:\/root:\/bin\/sh$/m);
    // sshd's privilege separation user (Debian's sshd is built with SSH_PRIVSEP_USER sshd), locked.
    expect(readFileSync(join(tree, 'etc/passwd'), 'utf8')).toMatch(/^sshd:x:22:22:[^:]*:\/run\/sshd:\/sbin\/nologin$/m);
    expect(readFileSync(join(tree, 'etc/shadow'), 'utf8')).toMatch(/^sshd:!:/m);
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

  it('the default world resolves against it and the project repository: psyopsOS-base with host-baselayout for OpenRC', async () => {
    const build = await prepareDefaultImage({
      home: join(dir, 'home'),
      nodebootBundle: Buffer.from('console.log("nodeboot");\n'),
      nodebootVersion: '0.0.0',
      outDir: join(dir, 'out'),
      mtime: MTIME,
    });
    expect(build.image.world).toContain('psyopsOS-base');
    expect(build.repositories.map((source) => source.url)[1]).toBe(repo.dir);
    const indexes = build.repositories.map((source) => ({ entries: readIndex(readFileSync(join(source.url, 'x86_64/APKINDEX.tar.gz')), { keys }).entries }));
    const resolved = resolve(build.image.world, indexes);
    const base = resolved.find((pkg) => pkg.entry.name === 'psyopsOS-base')!;
    expect(base.entry.depends).toEqual(['nodejs', 'cmd:openrc-run', 'cmd:rc-update', '/bin/sh']);
    expect(resolved.map((pkg) => pkg.entry.name).sort()).toEqual([
      'busybox',
      'host-baselayout',
      'minisign',
      'nebula',
      'nodejs',
      'openssh',
      'psyops-nodeboot',
      'psyopsOS-base',
    ]);
    // Signed by the host repository's key, which it installs as the image's apk key.
    const projectPackage = readdirSync(join(build.repositories[0]!.url, 'x86_64')).find((name) => name.startsWith('psyopsOS-base-'))!;
    const pkg = readPackage(readFileSync(join(build.repositories[0]!.url, 'x86_64', projectPackage)), { keys });
    expect(pkg.files.map((file) => file.path)).toContain(`etc/apk/keys/${pkg.trustedBy}`);
    expect(pkg.files.map((file) => file.path)).not.toContain('etc/psyopsOS/repository');
  }, 120_000);

  it('a rebuild reuses the key and gives the same bytes', async () => {
    const before = new Map(readdirSync(join(repo.dir, 'x86_64')).map((name) => [name, readFileSync(join(repo.dir, 'x86_64', name))]));
    const keysBefore = readdirSync(repo.keysDir);
    await buildHostRepository({ outDir: repo.dir, mtime: MTIME });
    expect(readdirSync(repo.keysDir)).toEqual(keysBefore);
    const after = readdirSync(join(repo.dir, 'x86_64'));
    expect(after).toEqual([...before.keys()]);
    for (const name of after) expect(readFileSync(join(repo.dir, 'x86_64', name)).equals(before.get(name)!), name).toBe(true);
  }, 300_000);

  it('boots: busybox init runs rcS, the runlevels and local.d, and rcK at power-off', async () => {
    // busybox + host-baselayout as an initramfs; /init only gives busybox init a console.
    const root = join(dir, 'boot-root');
    for (const name of ['busybox', 'host-baselayout']) await extractPackage(packages.get(name)!, root);
    for (const applet of readFileSync(join(root, 'etc/busybox-paths.d/busybox'), 'utf8').trim().split('\n')) {
      mkdirSync(join(root, applet, '..'), { recursive: true });
      symlinkSync('/bin/busybox', join(root, applet));
    }
    writeFileSync(join(root, 'init'), '#!/bin/sh\nmount -t devtmpfs devtmpfs /dev\nexec </dev/console >/dev/console 2>&1\nexec /sbin/init\n', { mode: 0o755 });
    writeFileSync(join(root, 'etc/hostname'), 'hostrepo-test\n');
    // The network driver comes from coldplug (mdev service), the address from udhcpc's script.
    const { image, release } = await hostKernel();
    const modules = join(trees.get('linux-debian')!, 'lib/modules', release);
    const dep = readFileSync(join(modules, 'modules.dep'), 'utf8');
    const needed = dep
      .split('\n')
      .filter((line) => /\/virtio_(net|pci)\.ko:/.test(line))
      .flatMap((line) => line.replace(':', '').split(/\s+/));
    for (const file of [...needed, 'modules.dep', 'modules.alias']) {
      mkdirSync(join(root, 'lib/modules', release, file, '..'), { recursive: true });
      writeFileSync(join(root, 'lib/modules', release, file), readFileSync(join(modules, file)));
    }
    writeFileSync(join(root, 'etc/network/interfaces'), 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n');
    const hook = (name: string, body: string) => writeFileSync(join(root, 'etc/local.d', name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    hook(
      '50-report.start',
      'echo "hostrepo-test: local.d on $(hostname), lo $(cat /sys/class/net/lo/operstate), /run $(grep -c " /run " /proc/mounts), syslogd $(pidof syslogd >/dev/null && echo up)"',
    );
    // QEMU's restricted DHCP gives no router or DNS server: a renewal with them is replayed by hand.
    const report =
      "echo \"hostrepo-test: $1 eth0 $(ip -4 -o addr show eth0 | awk '{ print $4 }'), $(ip route | grep ^default | tr '\\n' ' '), $(cat /etc/resolv.conf 2>/dev/null | tr '\\n' ' ')\"";
    hook(
      '60-network.start',
      `report() {\n${report}\n}\nreport dhcp\n` +
        'interface=eth0 ip=10.0.2.16 subnet=255.255.255.0 router="10.0.2.2 10.0.2.1" dns="10.0.2.3 192.0.2.53" domain=example.org /etc/udhcpc/default.script renew\nreport renew',
    );
    hook('90-poweroff.start', 'poweroff');
    hook('50-report.stop', 'echo "hostrepo-test: local.d stop hooks ran"');
    const initrd = join(dir, 'boot-root.gz');
    await writeInitramfs(root, initrd);

    const result = await bootInQemu({
      kernel: { image, initrd, append: 'console=ttyS0,115200 panic=-1 quiet' },
      network: { forwards: [] },
      memoryMiB: 512,
      timeoutMs: 150_000,
    });
    expect(result.reason).toBe('poweroff');
    expect(result.serial).toMatch(/hostrepo-test: local\.d on hostrepo-test, lo (up|unknown), \/run 1, syslogd up/);
    expect(result.serial).toContain('hostrepo-test: dhcp eth0 10.0.2.15/24, , \r\n');
    expect(result.serial).toMatch(
      /hostrepo-test: renew eth0 10\.0\.2\.16\/24, default via 10\.0\.2\.2 dev eth0\s+default via 10\.0\.2\.1 dev eth0\s+metric 1\s*, search example\.org nameserver 10\.0\.2\.3 nameserver 192\.0\.2\.53 \r\n/,
    );
    expect(result.serial).toContain('hostrepo-test: local.d stop hooks ran');
    // Every service and ifupdown ran without a complaint.
    expect(result.serial.split('\n').filter((line) => /failed|can't|RTNETLINK|not configured/.test(line))).toEqual([]);
  }, 200_000);
});
