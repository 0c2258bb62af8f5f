/** Host programs the image build calls, checked up front so a missing one fails in one clear line. */
import { access, constants } from 'node:fs/promises';
import { MissingToolError, requireProgram } from '@psyops/core';

/** Program name → the Debian package that provides it. */
const HOST_TOOLS = {
  xorriso: 'xorriso',
  mksquashfs: 'squashfs-tools',
  unsquashfs: 'squashfs-tools',
  mformat: 'mtools',
  mcopy: 'mtools',
  sfdisk: 'fdisk',
  'grub-mkimage': 'grub-common',
  depmod: 'kmod',
  xz: 'xz-utils',
  'mkfs.ext4': 'e2fsprogs',
  debugfs: 'e2fsprogs',
  'qemu-system-x86_64': 'qemu-system-x86',
} as const;

/** Files (not programs) that come from Debian packages. */
const HOST_FILES = {
  isolinuxBin: { path: '/usr/lib/ISOLINUX/isolinux.bin', debianPackage: 'isolinux' },
  isohdpfxBin: { path: '/usr/lib/ISOLINUX/isohdpfx.bin', debianPackage: 'isolinux' },
  syslinuxModules: { path: '/usr/lib/syslinux/modules/bios', debianPackage: 'syslinux-common' },
  grubEfiModules: { path: '/usr/lib/grub/x86_64-efi', debianPackage: 'grub-efi-amd64-bin' },
  ovmfCode: { path: '/usr/share/OVMF/OVMF_CODE.fd', debianPackage: 'ovmf' },
  ovmfVars: { path: '/usr/share/OVMF/OVMF_VARS.fd', debianPackage: 'ovmf' },
} as const;

export type HostTool = keyof typeof HOST_TOOLS;
export type HostFile = keyof typeof HOST_FILES;

/** Absolute path of each tool; throws MissingToolError naming the Debian package of the first missing one. */
export async function requireTools<T extends HostTool>(tools: readonly T[]): Promise<Record<T, string>> {
  const result = {} as Record<T, string>;
  for (const tool of tools) result[tool] = requireProgram(tool, HOST_TOOLS[tool]);
  return result;
}

/** Path of a host file; throws MissingToolError naming its Debian package when absent. */
export async function requireHostFile(file: HostFile): Promise<string> {
  const { path, debianPackage } = HOST_FILES[file];
  try {
    await access(path, constants.R_OK);
  } catch {
    throw new MissingToolError(path, debianPackage);
  }
  return path;
}
