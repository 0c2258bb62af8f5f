/**
 * A tiny bootable system for QEMU tests: the host's Debian kernel and an initramfs made of the
 * static busybox, the few modules a test needs and an /init that reports what it sees and powers off.
 */
import { chmod, copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';

// Behaviour is chosen on the kernel command line: fixture.usb, fixture.net, fixture.hang.
const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
echo "fixture: guest up"
for module in $(cat /modules.list); do insmod "$module" 2>/dev/null; done
cmdline=" $(cat /proc/cmdline) "
echo "fixture: efi $([ -d /sys/firmware/efi ] && echo yes || echo no)"
echo "fixture: net devices $(ls /sys/class/net | tr '\\n' ' ')"
case "$cmdline" in *" fixture.usb "*)
  tries=0
  while [ ! -e /sys/block/sda ] && [ $tries -lt 150 ]; do sleep 0.2; tries=$((tries + 1)); done
  echo "fixture: block devices $(ls /sys/block | tr '\\n' ' ')"
  echo "fixture: sda at $(readlink /sys/block/sda)"
  echo "fixture: findfs $(findfs LABEL=psyops-secret 2>&1)"
esac
case "$cmdline" in *" fixture.net "*)
  ip link set lo up
  ip link set eth0 up
  ip addr add 10.0.2.15/24 dev eth0
  for attempt in 1 2; do echo "fixture: fetch $attempt [$(wget -q -O - http://10.0.2.100/ 2>&1)]"; done
esac
case "$cmdline" in *" fixture.hang "*)
  echo "fixture: hanging"
  while :; do sleep 1; done
esac
echo "fixture: powering off"
poweroff -f
`;

const MODULES = ['virtio_net', 'virtio_pci', 'xhci_pci', 'usb_storage', 'sd_mod'];

export interface BootFixture {
  kernel: string;
  initrd: string;
  /** The kernel command line plus the given fixture words. */
  append(...words: string[]): string;
}

/** The newest /boot/vmlinuz-* and its release. */
export async function hostKernel(): Promise<{ image: string; release: string }> {
  const images = (await readdir('/boot')).filter((name) => name.startsWith('vmlinuz-')).sort();
  const image = images.at(-1);
  if (!image) throw new Error('no /boot/vmlinuz-* on this host (install linux-image-amd64)');
  return { image: join('/boot', image), release: image.slice('vmlinuz-'.length) };
}

/** A gzipped newc cpio of a directory tree, as the kernel unpacks an initramfs. */
export async function writeInitramfs(tree: string, output: string): Promise<void> {
  const { stdout: files } = await execa('find', ['.', '-mindepth', '1'], { cwd: tree });
  const cpio = `${output}.cpio`;
  await execa('cpio', ['--quiet', '-o', '-H', 'newc', '-O', cpio], { cwd: tree, input: `${files}\n` });
  await writeFile(output, gzipSync(await readFile(cpio)));
  await rm(cpio);
}

/** Builds the fixture's initramfs in `dir`. */
export async function buildBootFixture(dir: string): Promise<BootFixture> {
  const { image, release } = await hostKernel();
  const tree = join(dir, 'initramfs');
  for (const sub of ['bin', 'proc', 'sys', 'dev']) await mkdir(join(tree, sub), { recursive: true });
  await copyFile('/bin/busybox', join(tree, 'bin/busybox'));
  await chmod(join(tree, 'bin/busybox'), 0o755);
  await writeFile(join(tree, 'init'), INIT, { mode: 0o755 });

  const { stdout } = await execa('modprobe', ['-a', '--show-depends', '--set-version', release, ...MODULES]);
  const modules = [
    ...new Set(
      stdout
        .split('\n')
        .map((line) => /^insmod (\S+)/.exec(line)?.[1])
        .filter((path) => path !== undefined),
    ),
  ];
  for (const module of modules) {
    await mkdir(join(tree, dirname(module)), { recursive: true });
    await copyFile(module, join(tree, module));
  }
  await writeFile(join(tree, 'modules.list'), `${modules.join('\n')}\n`);

  const initrd = join(dir, 'initramfs.gz');
  await writeInitramfs(tree, initrd);
  return {
    kernel: image,
    initrd,
    append: (...words) => ['console=ttyS0,115200', 'panic=-1', 'quiet', ...words].join(' '),
  };
}

/** A BIOS-bootable ISO (isolinux) that boots the fixture with the given fixture words. */
export async function buildBootFixtureIso(dir: string, fixture: BootFixture, ...words: string[]): Promise<string> {
  const tree = join(dir, 'iso');
  await mkdir(join(tree, 'isolinux'), { recursive: true });
  await copyFile('/usr/lib/ISOLINUX/isolinux.bin', join(tree, 'isolinux/isolinux.bin'));
  await copyFile('/usr/lib/syslinux/modules/bios/ldlinux.c32', join(tree, 'isolinux/ldlinux.c32'));
  await copyFile(fixture.kernel, join(tree, 'vmlinuz'));
  await copyFile(fixture.initrd, join(tree, 'initrd.gz'));
  await writeFile(
    join(tree, 'isolinux/isolinux.cfg'),
    `SERIAL 0 115200\nDEFAULT fixture\nLABEL fixture\n  KERNEL /vmlinuz\n  INITRD /initrd.gz\n  APPEND ${fixture.append(...words)}\n`,
  );
  const iso = join(dir, 'fixture.iso');
  await execa('xorriso', [
    '-as',
    'mkisofs',
    '-quiet',
    '-o',
    iso,
    '-R',
    '-b',
    'isolinux/isolinux.bin',
    '-c',
    'isolinux/boot.cat',
    '-no-emul-boot',
    '-boot-load-size',
    '4',
    '-boot-info-table',
    tree,
  ]);
  return iso;
}
