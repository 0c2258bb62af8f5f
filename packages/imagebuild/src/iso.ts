/**
 * The hybrid ISO: ISO 9660 + Rock Ridge + Joliet, bootable by BIOS (ISOLINUX, with an MBR for
 * USB sticks) and UEFI (El Torito EFI image + GPT), written by xorriso straight from host files.
 */
import { writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { produceFileAtomically, runTool } from '@psyops/core';
import { ImageConfigError } from './errors.js';
import { assertVolumeId, bootLoaderConfigs, type EfiBoot } from './bootloader.js';
import type { KernelFiles } from './rootfs.js';
import { runStage, type StageCache, type StageResult } from './stage.js';
import { requireHostFile, requireTools } from './tools.js';

export interface IsoFile {
  /** Absolute path inside the ISO, e.g. `/boot/vmlinuz-lts`. */
  isoPath: string;
  hostPath: string;
}

export interface IsoOptions {
  volumeId: string;
  files: readonly IsoFile[];
  out: string;
  /** Seconds since the epoch: volume dates, every file date and the GPT disk GUID. */
  mtime: number;
}

const ISOLINUX_BIN = '/boot/syslinux/isolinux.bin';
const EFI_IMAGE = '/boot/grub/efi.img';
const BOOT_CATALOG = 'boot/syslinux/boot.cat';

/** `YYYYMMDDhhmmss00` in UTC, xorriso's time string. */
function xorrisoTime(seconds: number): string {
  return `${new Date(seconds * 1000).toISOString().replace(/\D/g, '').slice(0, 14)}00`;
}

/** In a graft point `=` separates the ISO path from the host path; a literal one is escaped. */
function graftPart(path: string): string {
  return path.replace(/\\/g, '\\\\').replace(/=/g, '\\=');
}

/** Writes the ISO beside `out` and renames it into place; nothing is left on failure. */
export async function writeIso(options: IsoOptions): Promise<void> {
  assertVolumeId(options.volumeId);
  const isoPaths = new Set<string>();
  for (const file of options.files) {
    if (
      !file.isoPath.startsWith('/') ||
      file.isoPath
        .split('/')
        .slice(1)
        .some((part) => part === '' || part === '.' || part === '..')
    ) {
      throw new ImageConfigError(`bad path in the ISO: ${JSON.stringify(file.isoPath)}`);
    }
    if (isoPaths.has(file.isoPath)) throw new ImageConfigError(`path twice in the ISO: ${file.isoPath}`);
    isoPaths.add(file.isoPath);
  }
  for (const required of [ISOLINUX_BIN, EFI_IMAGE]) {
    if (!isoPaths.has(required)) throw new ImageConfigError(`the ISO needs ${required} to boot`);
  }
  const { xorriso } = await requireTools(['xorriso']);
  const mbr = await requireHostFile('isohdpfxBin');
  const time = xorrisoTime(options.mtime);
  const grafts = [...options.files]
    .sort((a, b) => (a.isoPath < b.isoPath ? -1 : a.isoPath > b.isoPath ? 1 : 0))
    .map((file) => `${graftPart(file.isoPath)}=${graftPart(file.hostPath)}`);
  await produceFileAtomically(options.out, (temp) =>
    runTool(
      xorriso,
      [
        '-as',
        'mkisofs',
        '-quiet',
        '-output',
        temp,
        '-full-iso9660-filenames',
        '-joliet',
        '-rational-rock',
        '-sysid',
        'LINUX',
        '-volid',
        options.volumeId,
        // Host dates would make every build differ; this also fixes the volume uuid and GPT GUID.
        `--modification-date=${time}`,
        '--set_all_file_dates',
        time,
        '--gpt_disk_guid',
        'modification-date',
        '-isohybrid-mbr',
        mbr,
        '-eltorito-boot',
        ISOLINUX_BIN.slice(1),
        '-eltorito-catalog',
        BOOT_CATALOG,
        '-no-emul-boot',
        '-boot-load-size',
        '4',
        '-boot-info-table',
        '-eltorito-alt-boot',
        '-e',
        EFI_IMAGE.slice(1),
        '-no-emul-boot',
        '-isohybrid-gpt-basdat',
        '-graft-points',
        ...grafts,
      ],
      { env: { SOURCE_DATE_EPOCH: String(options.mtime) } },
    ),
  );
}

export interface IsoStageOptions {
  volumeId: string;
  release: string;
  arch: string;
  /** Names the kernel, initramfs and modloop on the media (`/boot/vmlinuz-<flavor>`). */
  kernelFlavor: string;
  /** The whole kernel command line. */
  cmdline: string;
  /** Its image goes on the media. */
  kernel: KernelFiles;
  initramfs: string;
  modloop: string;
  rootImage: string;
  efi: EfiBoot;
  apkovl: string;
  mtime: number;
}

/** The iso stage: `<stage>/psyopsOS-<release>-<arch>.iso`, the boot media laid out as /init and the boot loaders expect. */
export function isoStage(cache: StageCache, options: IsoStageOptions): Promise<StageResult<string>> {
  const { volumeId, release, arch, kernelFlavor } = options;
  return runStage(cache, 'iso', options, async (dir) => {
    const configs = bootLoaderConfigs({ kernelFlavor, cmdline: options.cmdline, volumeId });
    await writeFile(join(dir, 'syslinux.cfg'), configs.syslinuxCfg);
    await writeFile(join(dir, 'grub.cfg'), configs.grubCfg);
    await writeFile(join(dir, 'release'), `${release} ${arch}\n`);
    const syslinux = await requireHostFile('syslinuxModules');
    const files = [
      { isoPath: `/${basename(options.apkovl)}`, hostPath: options.apkovl },
      { isoPath: '/.psyopsOS-release', hostPath: join(dir, 'release') },
      { isoPath: `/boot/vmlinuz-${kernelFlavor}`, hostPath: options.kernel.image },
      { isoPath: `/boot/initramfs-${kernelFlavor}`, hostPath: options.initramfs },
      { isoPath: `/boot/modloop-${kernelFlavor}`, hostPath: options.modloop },
      { isoPath: '/boot/rootfs.squashfs', hostPath: options.rootImage },
      { isoPath: ISOLINUX_BIN, hostPath: await requireHostFile('isolinuxBin') },
      ...['ldlinux.c32', 'libcom32.c32', 'libutil.c32'].map((name) => ({ isoPath: `/boot/syslinux/${name}`, hostPath: join(syslinux, name) })),
      { isoPath: '/boot/syslinux/syslinux.cfg', hostPath: join(dir, 'syslinux.cfg') },
      { isoPath: '/boot/grub/grub.cfg', hostPath: join(dir, 'grub.cfg') },
      { isoPath: EFI_IMAGE, hostPath: options.efi.efiImage },
      { isoPath: '/efi/boot/bootx64.efi', hostPath: options.efi.efiBinary },
    ];
    const out = join(dir, `psyopsOS-${release}-${arch}.iso`);
    await writeIso({ volumeId, files, out, mtime: options.mtime });
    return out;
  });
}
