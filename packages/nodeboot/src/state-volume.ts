import { NodeInputError } from './errors.js';
import { assertOutputFree, writeExt4Image } from './ext4-image.js';
// Defined beside SECRET_LABEL: postboot needs the label, not this host-side image writer.
import { STATE_LABEL } from './secret-volume.js';

export interface StateImageOptions {
  /** Image size in MiB (default 16, at least 2: ext4's own minimum with a journal). */
  sizeMiB?: number;
  force?: boolean;
}

/** Writes an empty ext4 image labelled psyops-state (mkfs.ext4: no root, no loop mount), to be written to a disk or attached to a VM. */
export async function writeStateImage(out: string, options: StateImageOptions = {}): Promise<void> {
  const sizeMiB = options.sizeMiB ?? 16;
  if (!Number.isInteger(sizeMiB) || sizeMiB < 2 || sizeMiB > 1024 * 1024)
    throw new NodeInputError(`state image size must be a whole number of MiB from 2 to 1048576, not ${sizeMiB}`);
  assertOutputFree(out, options.force ?? false);
  await writeExt4Image(out, STATE_LABEL, sizeMiB);
}
