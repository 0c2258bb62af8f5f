/** Host programs the image build calls, checked up front so a missing one fails in one clear line. */
import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { execa } from 'execa';
import { MissingToolError, ToolFailedError } from './errors.js';

/** Program name → the Debian package that provides it. */
export const HOST_TOOLS = {
  xorriso: 'xorriso',
  mksquashfs: 'squashfs-tools',
  unsquashfs: 'squashfs-tools',
  mformat: 'mtools',
  mcopy: 'mtools',
  'grub-mkimage': 'grub-common',
  depmod: 'kmod',
  'mkfs.ext4': 'e2fsprogs',
  debugfs: 'e2fsprogs',
  'qemu-system-x86_64': 'qemu-system-x86',
} as const;

/** Files (not programs) that come from Debian packages. */
export const HOST_FILES = {
  isolinuxBin: { path: '/usr/lib/ISOLINUX/isolinux.bin', debianPackage: 'isolinux' },
  isohdpfxBin: { path: '/usr/lib/ISOLINUX/isohdpfx.bin', debianPackage: 'isolinux' },
  syslinuxModules: { path: '/usr/lib/syslinux/modules/bios', debianPackage: 'syslinux-common' },
  grubEfiModules: { path: '/usr/lib/grub/x86_64-efi', debianPackage: 'grub-efi-amd64-bin' },
  ovmfCode: { path: '/usr/share/OVMF/OVMF_CODE.fd', debianPackage: 'ovmf' },
  ovmfVars: { path: '/usr/share/OVMF/OVMF_VARS.fd', debianPackage: 'ovmf' },
} as const;

export type HostTool = keyof typeof HOST_TOOLS;
export type HostFile = keyof typeof HOST_FILES;

// Debian puts admin programs in sbin, which is not on every user's PATH.
const EXTRA_DIRS = ['/usr/sbin', '/sbin'];

async function findProgram(name: string): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const path = join(dir, name);
    try {
      await access(path, constants.X_OK);
      return path;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

const found = new Map<string, string>();

/** Absolute path of each tool; throws MissingToolError naming the Debian package of the first missing one. */
export async function requireTools<T extends HostTool>(tools: readonly T[]): Promise<Record<T, string>> {
  const result = {} as Record<T, string>;
  for (const tool of tools) {
    const path = found.get(tool) ?? (await findProgram(tool));
    if (!path) throw new MissingToolError(tool, HOST_TOOLS[tool]);
    found.set(tool, path);
    result[tool] = path;
  }
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

export interface RunOptions {
  cwd?: string;
  /** Kills the program after this many milliseconds (default 10 minutes). */
  timeoutMs?: number;
  env?: Record<string, string>;
  input?: string | Uint8Array;
  signal?: AbortSignal;
}

/** Runs a host program; failure becomes a ToolFailedError with the program's name and first error line. */
export async function runTool(path: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  // Stages pass their time stamps explicitly; mksquashfs refuses SOURCE_DATE_EPOCH next to them.
  const { SOURCE_DATE_EPOCH: _ignored, ...inherited } = process.env;
  const result = await execa(path, args, {
    cwd: options.cwd,
    timeout: options.timeoutMs ?? 600_000,
    env: { ...inherited, LC_ALL: 'C', ...options.env },
    extendEnv: false,
    input: options.input,
    cancelSignal: options.signal,
    reject: false,
    stripFinalNewline: false,
    encoding: 'utf8',
  });
  if (result.failed) {
    const name = path.split('/').pop();
    const reason = result.timedOut
      ? `timed out after ${options.timeoutMs ?? 600_000} ms`
      : (String(result.stderr).trim().split('\n')[0] || `exit code ${result.exitCode ?? result.signal}`);
    throw new ToolFailedError(`${name} failed: ${reason}`);
  }
  return String(result.stdout);
}
