/**
 * The volumes an update touches besides the root: the other slot (ext4) and the ESP (vfat), found
 * by label. NodeSystem models neither a vfat mount nor an unmount, so this narrow interface does:
 * on the node with mount/umount through NodeSystem.run, in tests with directories by label.
 */
import { closeSync, fsyncSync, mkdtempSync, openSync, readSync, writeSync } from 'node:fs';
import { PsyopsError, GRUBENV_SIZE, formatGrubEnv, parseGrubEnv } from '@psyops/core';
import type { NodeSystem } from '../system.js';

export class VolumeMountError extends PsyopsError {
  override readonly code = 'MOUNT_FAILED';
}

export interface MountedVolume {
  /** Where its files are on this machine. */
  dir: string;
  unmount(): Promise<void>;
}

export interface VolumeMounter {
  mount(label: string, type: 'ext4' | 'vfat', mode: 'ro' | 'rw'): Promise<MountedVolume>;
}

/** The node's mounter: `mount -t TYPE -o MODE LABEL=… DIR` in a fresh directory under /run/psyopsOS. */
export function commandMounter(system: NodeSystem): VolumeMounter {
  return {
    async mount(label, type, mode) {
      await system.mkdir('/run/psyopsOS', 0o700);
      const dir = mkdtempSync(system.pathOnHost(`/run/psyopsOS/mnt-${label}-`));
      // The kernel loads the file system module on demand only when modprobe can; ask once, best effort.
      await system.run('modprobe', ['-q', type], 10_000);
      const options = `${mode},nodev,nosuid,noexec`;
      const result = await system.run('mount', ['-t', type, '-o', options, `LABEL=${label}`, dir], 60_000);
      if (result.exitCode !== 0) throw new VolumeMountError(`cannot mount LABEL=${label} (${type}, ${mode}): ${result.stderr.trim().split('\n').at(-1) ?? ''}`);
      return {
        dir,
        async unmount() {
          await system.run('sync', [], 300_000);
          const done = await system.run('umount', [dir], 60_000);
          if (done.exitCode !== 0) throw new VolumeMountError(`cannot unmount ${dir}: ${done.stderr.trim().split('\n').at(-1) ?? ''}`);
        },
      };
    },
  };
}

/** Runs `body` with the volume mounted, unmounting it whatever happens. */
export async function withVolume<T>(
  mounter: VolumeMounter,
  label: string,
  type: 'ext4' | 'vfat',
  mode: 'ro' | 'rw',
  body: (dir: string) => Promise<T>,
): Promise<T> {
  const volume = await mounter.mount(label, type, mode);
  let result: T;
  try {
    result = await body(volume.dir);
  } catch (error) {
    await volume.unmount().catch(() => undefined);
    throw error;
  }
  await volume.unmount();
  return result;
}

export const ESP_LABEL = 'PSYOPS-ESP';
export const GRUBENV_PATH = 'boot/grub/grubenv';

/**
 * Sets GRUB variables in the ESP's grubenv, rewritten in place: GRUB's save_env writes the blocks
 * the file already has, so the file must keep them (no temp + rename), 1024 bytes at offset 0, fsynced.
 */
export async function updateGrubEnv(mounter: VolumeMounter, changes: Record<string, string>): Promise<Map<string, string>> {
  return withVolume(mounter, ESP_LABEL, 'vfat', 'rw', async (dir) => {
    const path = `${dir}/${GRUBENV_PATH}`;
    const fd = openSync(path, 'r+');
    try {
      const block = Buffer.alloc(GRUBENV_SIZE + 1);
      const length = readSync(fd, block, 0, block.length, 0);
      const variables = parseGrubEnv(block.subarray(0, length));
      for (const [name, value] of Object.entries(changes)) variables.set(name, value);
      const written = formatGrubEnv(variables);
      writeSync(fd, written, 0, written.length, 0);
      fsyncSync(fd);
      return variables;
    } finally {
      closeSync(fd);
    }
  });
}
