/** The host side's ext4 images (the secret and state volumes), made by mkfs.ext4: no root, no loop mount. */
import { existsSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FileAccessError, produceFileAtomically, requireProgram, runTool } from '@psyops/core';

/** Refuses an existing output unless `force`. */
export function assertOutputFree(path: string, force: boolean): void {
  if (!force && existsSync(path)) throw new FileAccessError(`refusing to overwrite ${path} (use -f to replace it)`, 'FILE_EXISTS', path);
}

/**
 * Writes an ext4 image labelled `label` (mkfs.ext4, with `-d contentDir` when given: no root, no
 * loop mount) to a temporary file beside `out`, then renames it into place; 0600.
 */
export async function writeExt4Image(out: string, label: string, sizeMiB: number, contentDir?: string): Promise<void> {
  const mkfs = requireProgram('mkfs.ext4', 'e2fsprogs');
  await mkdir(dirname(out), { recursive: true });
  await produceFileAtomically(out, async (temp) => {
    await runTool(mkfs, ['-q', '-F', '-t', 'ext4', '-L', label, '-E', 'root_owner=0:0', ...(contentDir ? ['-d', contentDir] : []), temp, `${sizeMiB}M`], {
      timeoutMs: 60_000,
    });
    await chmod(temp, 0o600);
  });
}
