/** The host side's ext4 images (the secret and state volumes), made by mkfs.ext4: no root, no loop mount. */
import { statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { FileAccessError, PsyopsError, requireProgram, runTool } from '@psyops/core';

/** Writing a volume was given up because its AbortSignal fired: nothing of it was left behind. */
export class VolumeInterruptedError extends PsyopsError {
  override readonly code = 'INTERRUPTED';
}

/** Throws VolumeInterruptedError when `signal` has fired. */
export function throwIfInterrupted(signal: AbortSignal | undefined, what: string, cause?: unknown): void {
  if (signal?.aborted) throw new VolumeInterruptedError(`interrupted: ${what} was not written`, { cause: cause ?? signal.reason });
}

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

export interface Ext4ImageOptions {
  /** Lays out the image's content in `dir` (a 0700 folder): mkfs.ext4 -d copies it in, its modes with it. */
  stage?: (dir: string) => Promise<void>;
  /** Gives up (mkfs.ext4 is killed): the temporary directory is removed and `out` is untouched. */
  signal?: AbortSignal;
}

/**
 * Writes an ext4 image labelled `label` (mkfs.ext4: no root, no loop mount) to `out`, readable by
 * no one else at any moment, whatever the umask: everything is made in a 0700 temporary directory
 * beside `out` (the content `stage` lays out, then the image, a file created 0600 that mkfs.ext4
 * -F writes into), and the complete image is renamed into place. On failure or abort the temporary
 * directory is removed and `out` is untouched. The directory of `out` must exist.
 */
export async function writeExt4Image(out: string, label: string, sizeMiB: number, options: Ext4ImageOptions = {}): Promise<void> {
  const { signal } = options;
  const mkfs = requireMkfs();
  throwIfInterrupted(signal, out);
  const temp = await mkdtemp(join(dirname(out), `.${basename(out)}.tmp-`)); // 0700
  try {
    await chmod(temp, 0o700);
    let content: string | undefined;
    if (options.stage) {
      content = join(temp, 'content');
      await mkdir(content, { mode: 0o700 });
      await chmod(content, 0o700); // the umask may have narrowed it
      await options.stage(content);
    }
    const image = join(temp, 'image');
    const handle = await open(image, 'wx', 0o600);
    try {
      await handle.chmod(0o600); // the umask may have narrowed it: mkfs.ext4 needs to write
    } finally {
      await handle.close();
    }
    throwIfInterrupted(signal, out);
    try {
      await runTool(mkfs, ['-q', '-F', '-t', 'ext4', '-L', label, '-E', 'root_owner=0:0', ...(content ? ['-d', content] : []), image, `${sizeMiB}M`], {
        timeoutMs: 60_000,
        ...(signal ? { signal } : {}),
      });
    } catch (error) {
      throwIfInterrupted(signal, out, error);
      throw error;
    }
    throwIfInterrupted(signal, out);
    await rename(image, out);
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}
