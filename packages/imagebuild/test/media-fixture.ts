/**
 * Boot media for tests, built with the real stages from this host's Debian kernel and static
 * busybox: a tiny root whose /sbin/init reports what the boot did, then powers off.
 */
import { chmod, copyFile, link, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { buildApkovl } from '../src/apkovl.js';
import { bootLoaderConfigs, buildEfiBoot, volumeIdFor } from '../src/bootloader.js';
import { buildInitramfs } from '../src/initramfs.js';
import { writeIso } from '../src/iso.js';
import { buildModloop, buildRootImage, type SquashfsCompression } from '../src/squashfs.js';

export const RELEASE = '251125';
export const ARCH = 'x86_64';
export const FLAVOR = 'debian';

/** The newest kernel in /lib/modules that has a /boot/vmlinuz-<version>. */
export async function hostKernelVersion(): Promise<string> {
  const versions = (await readdir('/lib/modules')).sort();
  const boot = new Set(await readdir('/boot'));
  const version = versions.filter((v) => boot.has(`vmlinuz-${v}`)).at(-1);
  if (!version) throw new Error('no Debian kernel on this host (install linux-image-amd64)');
  return version;
}

// The root's init stands in for the real init system: it runs the apkovl's local.d hooks and
// reports what the test asserts.
const ROOT_INIT = `#!/bin/busybox sh
export PATH=/bin:/sbin
echo "test-root: init running as pid $$"
echo "test-root: hostname $(cat /etc/hostname)"
echo "test-root: root fstype $(awk '$2 == "/" { print $3 }' /proc/mounts)"
echo "test-root: firstboot log [$(cat /var/firstboot.log | tr '\\n' ' ')]"
[ -e /lib/psyops/firstboot ] && echo "test-root: firstboot dir still there" || echo "test-root: firstboot dir removed"
grep -q ' /media/boot iso9660 ro' /proc/mounts && echo "test-root: media at /media/boot" || echo "test-root: media not mounted"
echo "test-root: secret dir mode $(stat -c %a /mnt/psyops-secret)"
echo "test-root: owned $(stat -c %u:%g:%a /etc/owned-by-1000)"
modprobe vfat && grep -q '^vfat ' /proc/modules && echo "test-root: modloop module vfat loaded"
for hook in /etc/local.d/*.start; do [ -x "$hook" ] && "$hook"; done
poweroff -f
`;

const FIRSTBOOT_SCRIPTS: Record<string, string> = {
  '0001-alpha.pre-install': 'echo alpha-pre >> /var/firstboot.log\n',
  '0001-alpha.post-install': 'echo alpha-post >> /var/firstboot.log\n',
  '0002-beta.post-install': '[ -d /proc/self ] && echo beta-post-with-proc >> /var/firstboot.log\n',
};

export const POSTBOOT_HOOK = `#!/bin/sh
for console in $(cat /sys/class/tty/console/active); do
	echo "psyopsOS: booted release=${RELEASE} root=$(awk '$2 == "/" { print $3 }' /proc/mounts)" > /dev/$console
	echo "psyopsOS: postboot test-hook" > /dev/$console
done
`;

async function rootTree(dir: string): Promise<string> {
  const root = join(dir, 'root');
  for (const sub of ['bin', 'sbin', 'etc', 'var', 'proc', 'sys', 'dev', 'tmp', 'lib/psyops/firstboot']) await mkdir(join(root, sub), { recursive: true });
  await copyFile('/bin/busybox', join(root, 'bin/busybox'));
  await chmod(join(root, 'bin/busybox'), 0o755);
  for (const applet of ['sh', 'awk', 'cat', 'tr', 'stat', 'grep', 'modprobe', 'poweroff']) await symlink('busybox', join(root, 'bin', applet));
  await writeFile(join(root, 'sbin/init'), ROOT_INIT, { mode: 0o755 });
  await chmod(join(root, 'sbin/init'), 0o755);
  await writeFile(join(root, 'etc/owned-by-1000'), 'x\n', { mode: 0o644 });
  for (const [name, body] of Object.entries(FIRSTBOOT_SCRIPTS)) {
    await writeFile(join(root, 'lib/psyops/firstboot', name), body, { mode: 0o700 });
  }
  return root;
}

/** A small module tree (the FAT driver) so the test modloop builds in a second. */
export async function smallModulesDir(dir: string, kernelVersion: string): Promise<string> {
  const modulesDir = join(dir, 'modules');
  const source = join('/lib/modules', kernelVersion);
  const target = join(modulesDir, kernelVersion);
  await mkdir(join(target, 'kernel/fs/fat'), { recursive: true });
  for (const name of await readdir(join(source, 'kernel/fs/fat'))) {
    await link(join(source, 'kernel/fs/fat', name), join(target, 'kernel/fs/fat', name)).catch(() =>
      copyFile(join(source, 'kernel/fs/fat', name), join(target, 'kernel/fs/fat', name)),
    );
  }
  for (const name of ['modules.dep', 'modules.builtin', 'modules.order']) await copyFile(join(source, name), join(target, name));
  return modulesDir;
}

export interface TestMedia {
  iso: string;
  volumeId: string;
  kernelVersion: string;
  /** Milliseconds per stage. */
  timings: Record<string, number>;
}

export interface TestMediaOptions {
  mtime: number;
  /** Names the ISO (`<name>.iso`) and its work directory. */
  name?: string;
  /** Modules for the modloop (default: the FAT driver only). */
  modulesDir?: string;
  /** The label /init looks for, when it should differ from the ISO's (to test the failure path). */
  initramfsVolumeId?: string;
  mediaWaitSeconds?: number;
  rootCompression?: SquashfsCompression;
  /** Host files copied into the root (to measure a realistic root size). */
  extraRootFiles?: { path: string; hostPath: string }[];
}

/** Builds every stage in `dir` and writes `dir/<name>.iso`. */
export async function buildTestMedia(dir: string, options: TestMediaOptions): Promise<TestMedia> {
  const kernelVersion = await hostKernelVersion();
  const volumeId = volumeIdFor(RELEASE, ARCH);
  const timings: Record<string, number> = {};
  const timed = async <T>(stage: string, run: () => Promise<T>): Promise<T> => {
    const start = performance.now();
    try {
      return await run();
    } finally {
      timings[stage] = Math.round(performance.now() - start);
    }
  };
  const { mtime } = options;
  const work = join(dir, `${options.name ?? 'media'}-work`);
  await mkdir(work, { recursive: true });
  const root = await rootTree(work);
  for (const extra of options.extraRootFiles ?? []) {
    await mkdir(dirname(join(root, extra.path)), { recursive: true });
    await copyFile(extra.hostPath, join(root, extra.path));
  }
  const modulesDir = options.modulesDir ?? (await smallModulesDir(work, kernelVersion));

  const out = (name: string): string => join(work, name);
  await timed('modloop', () => buildModloop({ kernelVersion, modulesDir, out: out('modloop'), mtime }));
  await timed('rootImage', () =>
    buildRootImage({
      rootDir: root,
      specialEntries: [{ path: 'etc/owned-by-1000', uid: 1000, gid: 1000, mode: 0o640 }],
      out: out('rootfs.squashfs'),
      mtime,
      compression: options.rootCompression,
    }),
  );
  await timed('initramfs', () =>
    buildInitramfs({
      kernelVersion,
      modulesDir: '/lib/modules',
      busybox: '/bin/busybox',
      volumeId: options.initramfsVolumeId ?? volumeId,
      release: RELEASE,
      kernelFlavor: FLAVOR,
      out: out('initramfs'),
      mtime,
      mediaWaitSeconds: options.mediaWaitSeconds,
    }),
  );
  const efi = await timed('efi', () => buildEfiBoot({ volumeId, outDir: out('efi'), mtime }));
  await timed('apkovl', () =>
    buildApkovl({
      hostname: 'psyopsOS-bootstrap',
      world: ['busybox'],
      release: RELEASE,
      arch: ARCH,
      buildInfo: { date: new Date(mtime * 1000).toISOString(), gitRevision: null, gitDirty: null },
      postbootHook: POSTBOOT_HOOK,
      out: out('psyopsOS-bootstrap.apkovl.tar.gz'),
      mtime,
    }),
  );
  const configs = bootLoaderConfigs({ kernelFlavor: FLAVOR, cmdline: 'quiet console=tty0 console=ttyS0,115200', volumeId });
  await writeFile(out('syslinux.cfg'), configs.syslinuxCfg);
  await writeFile(out('grub.cfg'), configs.grubCfg);
  await writeFile(out('release'), `${RELEASE} ${ARCH}\n`);
  const syslinux = '/usr/lib/syslinux/modules/bios';
  const iso = join(dir, `${options.name ?? 'media'}.iso`);
  await timed('iso', () =>
    writeIso({
      volumeId,
      out: iso,
      mtime,
      files: [
        { isoPath: '/psyopsOS-bootstrap.apkovl.tar.gz', hostPath: out('psyopsOS-bootstrap.apkovl.tar.gz') },
        { isoPath: `/boot/vmlinuz-${FLAVOR}`, hostPath: `/boot/vmlinuz-${kernelVersion}` },
        { isoPath: `/boot/initramfs-${FLAVOR}`, hostPath: out('initramfs') },
        { isoPath: `/boot/modloop-${FLAVOR}`, hostPath: out('modloop') },
        { isoPath: '/boot/rootfs.squashfs', hostPath: out('rootfs.squashfs') },
        { isoPath: '/boot/syslinux/isolinux.bin', hostPath: '/usr/lib/ISOLINUX/isolinux.bin' },
        ...['ldlinux.c32', 'libcom32.c32', 'libutil.c32'].map((name) => ({ isoPath: `/boot/syslinux/${name}`, hostPath: join(syslinux, name) })),
        { isoPath: '/boot/syslinux/syslinux.cfg', hostPath: out('syslinux.cfg') },
        { isoPath: '/boot/grub/grub.cfg', hostPath: out('grub.cfg') },
        { isoPath: '/boot/grub/efi.img', hostPath: efi.efiImage },
        { isoPath: '/efi/boot/bootx64.efi', hostPath: efi.efiBinary },
        { isoPath: '/.psyopsOS-release', hostPath: out('release') },
      ],
    }),
  );
  return { iso, volumeId, kernelVersion, timings };
}
