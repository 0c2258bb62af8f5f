/** The host side's ext4 images (the secret and state volumes), made by mkfs.ext4: no root, no loop mount. */
import { statSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FileAccessError, produceFileAtomically, requireProgram, runTool } from '@psyops/core';

/**
 * Checks where an image (`kind` 'file') or a folder ('dir') is to be written, before anything is:
 * its directory must exist (it is never created), an existing output is refused unless `force`,
 * and even with `force` only a regular file (or a folder, for 'dir') is ever replaced.
 */
export function assertOutputFree(path: string, force: boolean, kind: 'file' | 'dir' = 'file'): void {
  const parent = dirname(path);
  const parentInfo = statSync(parent, { throwIfNoEntry: false });
  if (parentInfo === undefined) throw new FileAccessError(`the directory ${parent} does not exist (create it first)`, 'FILE_NOT_FOUND', parent);
  if (!parentInfo.isDirectory()) throw new FileAccessError(`${parent} is not a directory`, 'NOT_A_FILE', parent);
  const info = statSync(path, { throwIfNoEntry: false });
  if (info === undefined) return;
  if (!force) throw new FileAccessError(`refusing to overwrite ${path} (use -f to replace it)`, 'FILE_EXISTS', path);
  if (kind === 'file' && !info.isFile()) throw new FileAccessError(`${path} is not a regular file; refusing to replace it`, 'NOT_A_FILE', path);
  if (kind === 'dir' && !info.isDirectory()) throw new FileAccessError(`${path} is not a directory; refusing to replace it`, 'NOT_A_FILE', path);
}

/** mkfs.ext4, or a one-line MissingToolError naming e2fsprogs: checked before anything is written. */
export function requireMkfs(): string {
  return requireProgram('mkfs.ext4', 'e2fsprogs');
}

/**
 * Writes an ext4 image labelled `label` (mkfs.ext4, with `-d contentDir` when given: no root, no
 * loop mount) to a temporary file beside `out`, then renames it into place; 0600. The directory
 * of `out` must exist.
 */
export async function writeExt4Image(out: string, label: string, sizeMiB: number, contentDir?: string): Promise<void> {
  const mkfs = requireMkfs();
  await produceFileAtomically(out, async (temp) => {
    await runTool(mkfs, ['-q', '-F', '-t', 'ext4', '-L', label, '-E', 'root_owner=0:0', ...(contentDir ? ['-d', contentDir] : []), temp, `${sizeMiB}M`], {
      timeoutMs: 60_000,
    });
    await chmod(temp, 0o600);
  });
}
