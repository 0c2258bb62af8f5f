import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export interface FileToWrite {
  path: string;
  data: string | Uint8Array;
  /** Permission bits; secrets use 0o600. */
  mode?: number;
}

/**
 * Writes several files so that either all of them are replaced or none is: each goes to a
 * temporary file beside its target (created with its final mode, so a secret is never readable
 * by others, and fsynced), and only when every one is complete are they renamed into place.
 * On failure the temporary files are removed and the targets are untouched.
 */
export async function writeFilesAtomically(files: readonly FileToWrite[]): Promise<void> {
  const staged: { temp: string; path: string }[] = [];
  try {
    for (const file of files) {
      await mkdir(dirname(file.path), { recursive: true });
      const temp = join(dirname(file.path), `.${basename(file.path)}.${randomBytes(6).toString('hex')}.tmp`);
      const handle = await open(temp, 'wx', file.mode ?? 0o644);
      staged.push({ temp, path: file.path });
      try {
        await handle.writeFile(file.data);
        await handle.chmod(file.mode ?? 0o644); // the umask may have narrowed the mode given to open
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    for (const { temp, path } of staged) await rename(temp, path);
  } catch (error) {
    await Promise.all(staged.map(({ temp }) => unlink(temp).catch(() => undefined)));
    throw error;
  }
}
