/**
 * A GPT disk with A/B slots for boot tests, made without `build-disk`: the real initramfs, modloop,
 * root image and apkovl stages (this host's Debian kernel and static busybox), laid out as the
 * contract's slot content in ext4 file systems made by mkfs.ext4 -d, in the contract's partition
 * order (ESP, secret, state, A, B), partitioned by sfdisk. The slots differ only in
 * `.psyopsOS-release`, so the guest can say which one it booted. The ESP holds a stand-in GRUB
 * (not build-disk's): its embedded config records in grubenv that it ran, then boots slot A as
 * after a rolled-back trial of B.
 */
import { chmod, copyFile, mkdir, open, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatGrubEnv } from '@psyops/core';
import { execa } from 'execa';
import { buildApkovl } from '../src/apkovl.js';
import { writeAt } from '../src/disk-image.js';
import { buildInitramfs } from '../src/initramfs.js';
import { buildModloop, buildRootImage } from '../src/squashfs.js';
import { ARCH, FLAVOR, hostKernelVersion, POSTBOOT_HOOK, RELEASE, smallModulesDir } from './media-fixture.js';

/** Each slot's release (`.psyopsOS-release`): the guest prints it from its boot media. */
export const SLOT_RELEASES = { A: `${RELEASE}`, B: `${RELEASE}b` } as const;
const HOSTNAME = 'psyopsOS-slots';
const LINUX_DATA = '0FC63DAF-8483-4772-8E79-3D69D8477DE4';
const MiB = 1024 * 1024;
const ESP = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';
const SLOT_MIB = 48;
const SMALL_MIB = 8;
/** Where the ESP starts on the disk (mtools reads it as `disk@@offset`). */
export const ESP_OFFSET = 1024 * 1024;

// The root's init reports what the slot boot did. A trial is never marked good here: it waits for
// the watchdog (nothing disarms it), as a system whose postboot hangs would.
const ROOT_INIT = `#!/bin/busybox sh
export PATH=/bin:/sbin
echo "slot-root: init running as pid $$"
echo "slot-root: media $(awk '$2 == "/media/boot" { print $1, $3, substr($4, 1, 2) }' /proc/mounts)"
echo "slot-root: release $(cat /media/boot/.psyopsOS-release)"
if grep -q '^softdog ' /proc/modules; then
	echo "slot-root: softdog loaded, state $(cat /sys/class/watchdog/watchdog0/state), timeout $(cat /sys/class/watchdog/watchdog0/timeout) s"
else
	echo "slot-root: softdog not loaded"
fi
for hook in /etc/local.d/*.start; do [ -x "$hook" ] && "$hook"; done
case " $(cat /proc/cmdline) " in
	*" psyopsos.trial=1 "*)
		echo "slot-root: trial not marked good: waiting for the watchdog"
		while :; do sleep 10; done
		;;
esac
poweroff -f
`;

export interface SlotDisk {
  /** The raw GPT disk: psyops-esp (1), psyops-secret (2), psyops-state (3), psyopsOS-A (4), psyopsOS-B (5). */
  disk: string;
  kernel: string;
  initrd: string;
  kernelVersion: string;
  /** Milliseconds per step. */
  timings: Record<string, number>;
}

async function rootTree(dir: string): Promise<string> {
  const root = join(dir, 'root');
  for (const sub of ['bin', 'sbin', 'etc', 'var', 'proc', 'sys', 'dev', 'tmp', 'media/boot']) await mkdir(join(root, sub), { recursive: true });
  await copyFile('/bin/busybox', join(root, 'bin/busybox'));
  await chmod(join(root, 'bin/busybox'), 0o755);
  for (const applet of ['sh', 'awk', 'cat', 'grep', 'sleep', 'poweroff']) await symlink('busybox', join(root, 'bin', applet));
  await writeFile(join(root, 'sbin/init'), ROOT_INIT, { mode: 0o755 });
  await chmod(join(root, 'sbin/init'), 0o755);
  return root;
}

// GRUB's save_env rewrites the grubenv file's sectors in place: the boot disk's writes must land in
// the image. (An early config runs under GRUB's rescue parser: no `if`.)
const GRUB_CONFIG = `search --no-floppy --set=esp --label PSYOPS-ESP
load_env --file ($esp)/boot/grub/grubenv
set fixture_booted=A
save_env --file ($esp)/boot/grub/grubenv fixture_booted
echo "grub-fixture: booting slot $fixture_booted"
search --no-floppy --set=root --label psyopsOS-A
linux /boot/vmlinuz-${FLAVOR} console=ttyS0,115200 quiet no_timer_check psyopsos.slot=psyopsOS-A psyopsos.rolled_back_from=B
initrd /boot/initramfs-${FLAVOR}
boot
`;
const GRUB_MODULES = ['part_gpt', 'fat', 'ext2', 'search', 'search_label', 'loadenv', 'test', 'echo', 'linux', 'boot', 'all_video', 'efi_gop'];

/** A FAT ESP image with the stand-in GRUB at the removable-media path and an empty grubenv. */
async function espImage(work: string, mib: number, mtime: number): Promise<string> {
  const tree = join(work, 'esp');
  await mkdir(join(tree, 'EFI/BOOT'), { recursive: true });
  await mkdir(join(tree, 'boot/grub'), { recursive: true });
  await writeFile(join(work, 'grub-embedded.cfg'), GRUB_CONFIG);
  await execa('grub-mkimage', [
    '--directory',
    '/usr/lib/grub/x86_64-efi',
    '--config',
    join(work, 'grub-embedded.cfg'),
    '--prefix',
    '/boot/grub',
    '--output',
    join(tree, 'EFI/BOOT/BOOTX64.EFI'),
    '--format',
    'x86_64-efi',
    ...GRUB_MODULES,
  ]);
  await writeFile(join(tree, 'boot/grub/grubenv'), formatGrubEnv({}));
  for (const path of ['EFI/BOOT/BOOTX64.EFI', 'boot/grub/grubenv', 'EFI/BOOT', 'boot/grub', 'EFI', 'boot']) await utimes(join(tree, path), mtime, mtime);
  const image = join(work, 'esp.img');
  const handle = await open(image, 'w');
  await handle.truncate(mib * MiB);
  await handle.close();
  await execa('mformat', ['-i', image, '-v', 'PSYOPS-ESP', '-N', '0', '::']);
  await execa('mcopy', ['-i', image, '-s', '-m', join(tree, 'EFI'), join(tree, 'boot'), '::']);
  return image;
}

/** Builds the stages and the disk in `dir`. */
export async function buildSlotDisk(dir: string, mtime: number): Promise<SlotDisk> {
  const kernelVersion = await hostKernelVersion();
  const timings: Record<string, number> = {};
  const timed = async <T>(step: string, run: () => Promise<T>): Promise<T> => {
    const start = performance.now();
    try {
      return await run();
    } finally {
      timings[step] = Math.round(performance.now() - start);
    }
  };
  const work = join(dir, 'slot-work');
  await mkdir(work, { recursive: true });
  const out = (name: string): string => join(work, name);
  const root = await rootTree(work);
  const modulesDir = await smallModulesDir(work, kernelVersion);
  await timed('modloop', () => buildModloop({ kernelVersion, modulesDir, out: out('modloop'), mtime }));
  await timed('rootImage', () => buildRootImage({ rootDir: root, specialEntries: [], out: out('rootfs.squashfs'), mtime }));
  // The image's own initramfs: the default early and on-demand module lists (ext4, crc32c, softdog…).
  await timed('initramfs', () =>
    buildInitramfs({
      kernelVersion,
      modulesDir: '/lib/modules',
      busybox: '/bin/busybox',
      volumeId: `psyopsos-boot ${RELEASE} ${ARCH}`,
      release: RELEASE,
      kernelFlavor: FLAVOR,
      out: out('initramfs'),
      mtime,
      mediaWaitSeconds: 10,
    }),
  );
  const apkovl = `${HOSTNAME}.apkovl.tar.gz`;
  await timed('apkovl', () =>
    buildApkovl({
      hostname: HOSTNAME,
      world: ['busybox'],
      release: RELEASE,
      arch: ARCH,
      buildInfo: { date: new Date(mtime * 1000).toISOString(), gitRevision: null, gitDirty: null },
      postbootHook: POSTBOOT_HOOK,
      out: out(apkovl),
      mtime,
    }),
  );

  const partitions: { name: string; mib: number; image: string; type: string }[] = [];
  await timed('esp', async () => partitions.push({ name: 'psyops-esp', mib: SMALL_MIB * 4, image: await espImage(work, SMALL_MIB * 4, mtime), type: ESP }));
  const empty = join(work, 'empty');
  await mkdir(empty);
  await timed('mkfs', async () => {
    for (const name of ['psyops-secret', 'psyops-state']) {
      await execa('mkfs.ext4', ['-q', '-F', '-L', name, '-d', empty, out(`${name}.img`), `${SMALL_MIB}M`]);
      partitions.push({ name, mib: SMALL_MIB, image: out(`${name}.img`), type: LINUX_DATA });
    }
    for (const slot of ['A', 'B'] as const) {
      const content = join(work, `slot-${slot}`);
      await mkdir(join(content, 'boot'), { recursive: true });
      await writeFile(join(content, '.psyopsOS-release'), `${SLOT_RELEASES[slot]} ${ARCH}\n`);
      await copyFile(out(apkovl), join(content, apkovl));
      await copyFile(`/boot/vmlinuz-${kernelVersion}`, join(content, `boot/vmlinuz-${FLAVOR}`));
      await copyFile(out('initramfs'), join(content, `boot/initramfs-${FLAVOR}`));
      await copyFile(out('modloop'), join(content, `boot/modloop-${FLAVOR}`));
      await copyFile(out('rootfs.squashfs'), join(content, 'boot/rootfs.squashfs'));
      const image = out(`slot-${slot}.img`);
      await execa('mkfs.ext4', ['-q', '-F', '-L', `psyopsOS-${slot}`, '-d', content, image, `${SLOT_MIB}M`]);
      partitions.push({ name: `psyopsOS-${slot}`, mib: SLOT_MIB, image, type: LINUX_DATA });
    }
  });

  // GPT, partitions from 1 MiB on, each aligned to 1 MiB; 1 MiB at the end for the backup table.
  const disk = join(dir, 'slots.img');
  await timed('disk', async () => {
    const totalMiB = 1 + partitions.reduce((sum, part) => sum + part.mib, 0) + 1;
    await writeFile(disk, '');
    const handle = await open(disk, 'r+');
    await handle.truncate(totalMiB * MiB);
    await handle.close();
    let startMiB = 1;
    const lines = ['label: gpt', 'unit: sectors'];
    for (const part of partitions) {
      lines.push(`start=${startMiB * 2048}, size=${part.mib * 2048}, type=${part.type}, name="${part.name}"`);
      startMiB += part.mib;
    }
    await execa('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', disk], { input: `${lines.join('\n')}\n` });
    startMiB = 1;
    for (const part of partitions) {
      if ((await stat(part.image)).size !== part.mib * MiB) throw new Error(`${part.image} is not ${part.mib} MiB`);
      await writeAt(disk, startMiB * MiB, part.image);
      startMiB += part.mib;
    }
  });
  return { disk, kernel: `/boot/vmlinuz-${kernelVersion}`, initrd: out('initramfs'), kernelVersion, timings };
}
