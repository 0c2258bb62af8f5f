import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, rename, rm, unlink } from 'node:fs/promises';
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
      const temp = tempPathBeside(file.path);
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

/** A fresh name beside `path` for a temporary file or directory that becomes `path` by rename. */
export function tempPathBeside(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
}

/**
 * Runs `produce(temp)` to create a file at `temp` beside `out`, then renames it to `out`; on
 * failure the temporary file is removed and `out` is untouched.
 */
export async function produceFileAtomically<T>(out: string, produce: (temp: string) => Promise<T>): Promise<T> {
  const temp = tempPathBeside(out);
  try {
    const result = await produce(temp);
    await rename(temp, out);
    return result;
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/**
 * Builds a directory with `produce(temp)` in a temporary directory beside `dir` (created with
 * `mode`, default 0o755), then puts it in place of `dir` (an existing `dir` is replaced only
 * once the new one is complete); on failure the temporary directory is removed and `dir` is untouched.
 */
export async function produceDirectoryAtomically<T>(dir: string, produce: (temp: string) => Promise<T>, options: { mode?: number } = {}): Promise<T> {
  await mkdir(dirname(dir), { recursive: true });
  const temp = tempPathBeside(dir);
  try {
    await mkdir(temp, { mode: options.mode ?? 0o755 }); // never wider than asked, even for a moment
    await chmod(temp, options.mode ?? 0o755); // mkdir's mode is narrowed by the umask
    const result = await produce(temp);
    await rm(dir, { recursive: true, force: true });
    await rename(temp, dir);
    return result;
  } catch (error) {
    await rm(temp, { recursive: true, force: true });
    throw error;
  }
}
