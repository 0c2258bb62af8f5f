import { chmod, mkdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { NodeInputError } from './errors.js';
import { assertOutputFree, findTool, runTool } from './secret-volume.js';

/**
 * The label of the optional state volume: a read-write ext4 file system that nodeboot mounts at
 * /var/lib/psyopsOS, so that the last good config outlives a reboot of the RAM-only OS.
 */
export const STATE_LABEL = 'psyops-state';

export interface StateImageOptions {
  /** Image size in MiB (default 16, at least 2: ext4's own minimum with a journal). */
  sizeMiB?: number;
  force?: boolean;
}

/** Writes an empty ext4 image labelled psyops-state (mkfs.ext4: no root, no loop mount), to be written to a disk or attached to a VM. */
export async function writeStateImage(out: string, options: StateImageOptions = {}): Promise<void> {
  const sizeMiB = options.sizeMiB ?? 16;
  if (!Number.isInteger(sizeMiB) || sizeMiB < 2 || sizeMiB > 1024 * 1024) throw new NodeInputError(`state image size must be a whole number of MiB from 2 to 1048576, not ${sizeMiB}`);
  assertOutputFree(out, options.force ?? false);
  const mkfs = findTool('mkfs.ext4', 'e2fsprogs');
  await mkdir(dirname(out), { recursive: true });
  const tempImage = join(dirname(out), `.${basename(out)}.${process.pid}.tmp`);
  try {
    await runTool(mkfs, ['-q', '-F', '-t', 'ext4', '-L', STATE_LABEL, '-E', 'root_owner=0:0', tempImage, `${sizeMiB}M`]);
    await chmod(tempImage, 0o600);
    await rename(tempImage, out);
  } catch (error) {
    await rm(tempImage, { force: true });
    throw error;
  }
}
