/**
 * Boot loaders: ISOLINUX for BIOS, GRUB for UEFI. The GRUB EFI binary finds the media by its
 * volume label, so the label written by xorriso and the one embedded here must be identical.
 */
import { copyFile, mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { produceFileAtomically, runTool } from '@psyops/core';
import { ImageConfigError } from './errors.js';
import { runStage, type StageCache, type StageResult } from './stage.js';
import { requireHostFile, requireTools } from './tools.js';

/** ISO 9660 allows at most 32 characters in the volume id; xorriso refuses more. */
const MAX_VOLUME_ID_LENGTH = 32;

/** `psyopsos-boot <release> <arch>`; throws ImageConfigError when it would not fit. */
export function volumeIdFor(release: string, arch: string): string {
  const volumeId = `psyopsos-boot ${release} ${arch}`;
  assertVolumeId(volumeId);
  return volumeId;
}

export function assertVolumeId(volumeId: string): void {
  if (volumeId.length > MAX_VOLUME_ID_LENGTH) {
    throw new ImageConfigError(`volume id "${volumeId}" has ${volumeId.length} characters, ISO 9660 allows ${MAX_VOLUME_ID_LENGTH}: use a shorter release tag`);
  }
  // It is quoted in grub's early config and the initramfs: keep it to printable, unquoted characters.
  if (!/^[\x20-\x7e]+$/.test(volumeId) || /["'\\$`]/.test(volumeId)) {
    throw new ImageConfigError(`volume id ${JSON.stringify(volumeId)} may only hold printable ASCII without quotes, \\, $ or \``);
  }
}

export interface BootLoaderConfigOptions {
  /** Names the kernel and initramfs on the media: `/boot/vmlinuz-<flavor>`, `/boot/initramfs-<flavor>`. */
  kernelFlavor: string;
  /** The whole kernel command line (the orchestrator passes `quiet no_timer_check <image.kernelCmdline>`). */
  cmdline: string;
  volumeId: string;
}

export interface BootLoaderConfigs {
  /** `/boot/syslinux/syslinux.cfg` (ISOLINUX, BIOS). */
  syslinuxCfg: string;
  /** `/boot/grub/grub.cfg` (GRUB, UEFI). */
  grubCfg: string;
}

/** Both loaders boot the same kernel, initramfs and command line at once. */
export function bootLoaderConfigs(options: BootLoaderConfigOptions): BootLoaderConfigs {
  assertVolumeId(options.volumeId);
  if (/[\n\r"]/.test(options.cmdline))
    throw new ImageConfigError(`kernel command line may not contain quotes or line breaks: ${JSON.stringify(options.cmdline)}`);
  if (!/^[A-Za-z0-9._-]+$/.test(options.kernelFlavor)) throw new ImageConfigError(`bad kernel flavor ${JSON.stringify(options.kernelFlavor)}`);
  const kernel = `/boot/vmlinuz-${options.kernelFlavor}`;
  const initramfs = `/boot/initramfs-${options.kernelFlavor}`;
  const syslinuxCfg = [
    'SERIAL 0 115200',
    // No prompt, no wait: each second counts at every boot. Holding Shift or Alt shows the prompt.
    'PROMPT 0',
    'TIMEOUT 0',
    `DEFAULT ${options.kernelFlavor}`,
    '',
    `LABEL ${options.kernelFlavor}`,
    `\tMENU LABEL psyopsOS ${options.kernelFlavor}`,
    `\tKERNEL ${kernel}`,
    `\tINITRD ${initramfs}`,
    `\tAPPEND ${options.cmdline}`,
    '',
  ].join('\n');
  const grubCfg = [
    // The early config already set root; this keeps grub.cfg usable when loaded another way.
    `search --no-floppy --set=root --label "${options.volumeId}"`,
    'set timeout=0',
    '',
    `menuentry "psyopsOS ${options.kernelFlavor}" {`,
    `\tlinux\t${kernel} ${options.cmdline}`,
    `\tinitrd\t${initramfs}`,
    '}',
    '',
  ].join('\n');
  return { syslinuxCfg, grubCfg };
}

/** The GRUB modules of Alpine's x86_64 images (mkimg.base.sh). */
export const GRUB_EFI_MODULES = [
  'all_video',
  'disk',
  'part_gpt',
  'part_msdos',
  'linux',
  'normal',
  'configfile',
  'search',
  'search_label',
  'efi_gop',
  'fat',
  'iso9660',
  'cat',
  'echo',
  'ls',
  'test',
  'true',
  'help',
  'gzio',
  'multiboot2',
  'efi_uga',
];

export interface EfiBootOptions {
  volumeId: string;
  /** Receives `efi/boot/bootx64.efi` and `boot/grub/efi.img`. */
  outDir: string;
  /** Seconds since the epoch: the FAT image's file dates. */
  mtime: number;
}

export interface EfiBoot {
  efiBinary: string;
  efiImage: string;
}

/**
 * GRUB for x86_64 UEFI with an embedded early config that finds the media by label, and the FAT
 * image (El Torito UEFI entry) holding it. grub-mkimage (not grub-mkstandalone, whose memdisk
 * carries time stamps) and a FAT image with serial 0 and fixed dates make both reproducible.
 */
export async function buildEfiBoot(options: EfiBootOptions): Promise<EfiBoot> {
  assertVolumeId(options.volumeId);
  const tools = await requireTools(['grub-mkimage', 'mformat', 'mcopy']);
  const grubModules = await requireHostFile('grubEfiModules');
  const efiBinary = join(options.outDir, 'efi', 'boot', 'bootx64.efi');
  const efiImage = join(options.outDir, 'boot', 'grub', 'efi.img');
  await mkdir(dirname(efiBinary), { recursive: true });
  await mkdir(dirname(efiImage), { recursive: true });
  const work = await mkdtemp(join(options.outDir, '.efi-'));
  try {
    const earlyConfig = join(work, 'grub-early.cfg');
    await writeFile(earlyConfig, `search --no-floppy --set=root --label "${options.volumeId}"\nset prefix=($root)/boot/grub\n`);
    // Inside the FAT image the binary must sit at /efi/boot/bootx64.efi.
    const fatTree = join(work, 'efi');
    const fatBinary = join(fatTree, 'boot', 'bootx64.efi');
    await mkdir(dirname(fatBinary), { recursive: true });
    await runTool(tools['grub-mkimage'], [
      '--directory',
      grubModules,
      '--config',
      earlyConfig,
      '--prefix',
      '/boot/grub',
      '--output',
      fatBinary,
      '--format',
      'x86_64-efi',
      '--compression',
      'xz',
      ...GRUB_EFI_MODULES,
    ]);
    // mcopy -m keeps the source dates, the FAT entries' only time source.
    for (const path of [fatBinary, dirname(fatBinary), fatTree]) await utimes(path, options.mtime, options.mtime);
    const env = { SOURCE_DATE_EPOCH: String(options.mtime) };
    await produceFileAtomically(efiImage, async (temp) => {
      await runTool(tools.mformat, ['-i', temp, '-C', '-f', '1440', '-N', '0', '::'], { env });
      await runTool(tools.mcopy, ['-i', temp, '-s', '-m', fatTree, '::'], { env });
    });
    await produceFileAtomically(efiBinary, (temp) => copyFile(fatBinary, temp));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return { efiBinary, efiImage };
}

/** The efi stage: buildEfiBoot's files in the stage directory. */
export function efiStage(cache: StageCache, volumeId: string, mtime: number): Promise<StageResult<EfiBoot>> {
  return runStage(cache, 'efi', { volumeId, mtime }, (dir) => buildEfiBoot({ volumeId, outDir: dir, mtime }));
}
