import { open, readFile, type FileHandle } from 'node:fs/promises';
import { FileAccessError } from './errors.js';

/** Turns a Node.js file-system error into a FileAccessError that names the file and its role. */
export function fileAccessError(error: unknown, path: string, what: string): Error {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return new FileAccessError(`${what} not found: ${path}`, 'FILE_NOT_FOUND', path, { cause: error });
  if (code === 'EISDIR') return new FileAccessError(`${what} is a directory, not a file: ${path}`, 'NOT_A_FILE', path, { cause: error });
  if (code === 'ENOTDIR') return new FileAccessError(`${what} not found (a parent is not a directory): ${path}`, 'FILE_NOT_FOUND', path, { cause: error });
  if (code === 'EEXIST') return new FileAccessError(`${what} already exists: ${path}`, 'FILE_EXISTS', path, { cause: error });
  const reason = code ?? (error instanceof Error ? error.message : String(error));
  return new FileAccessError(`${what} cannot be read (${reason}): ${path}`, 'FILE_UNREADABLE', path, { cause: error });
}

/** Opens a regular file for reading; anything else (directory, device, socket) is refused. */
export async function openRegularFile(path: string, what: string): Promise<{ handle: FileHandle; size: number }> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw fileAccessError(error, path, what);
  }
  try {
    const stats = await handle.stat();
    if (stats.isDirectory()) {
      throw new FileAccessError(`${what} is a directory, not a file: ${path}`, 'NOT_A_FILE', path);
    }
    if (!stats.isFile()) throw new FileAccessError(`${what} is not a regular file: ${path}`, 'NOT_A_FILE', path);
    return { handle, size: stats.size };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** Reads a whole regular file, refusing anything over `maxBytes`. */
export async function readRegularFile(path: string, what: string, maxBytes: number): Promise<Buffer> {
  const { handle, size } = await openRegularFile(path, what);
  try {
    if (size > maxBytes) {
      throw new FileAccessError(`${what} is too large (${size} bytes, at most ${maxBytes}): ${path}`, 'FILE_TOO_LARGE', path);
    }
    return await handle.readFile();
  } catch (error) {
    throw error instanceof FileAccessError ? error : fileAccessError(error, path, what);
  } finally {
    await handle.close();
  }
}

/** Calls `onChunk` for each chunk of a file, reading the next chunk while the caller works on this one. */
export async function forEachChunk(
  path: string,
  what: string,
  onChunk: (chunk: Uint8Array) => void,
  onProgress?: (bytesDone: number, bytesTotal: number) => void,
): Promise<void> {
  // 1 MiB chunks, double-buffered: the read of chunk n+1 runs on libuv's thread pool while
  // chunk n is hashed, so memory stays at two buffers whatever the file size.
  const chunkSize = 1 << 20;
  const { handle, size } = await openRegularFile(path, what);
  let done = 0;
  try {
    const buffers = [Buffer.allocUnsafe(chunkSize), Buffer.allocUnsafe(chunkSize)] as const;
    let current = 0;
    let pending = handle.read(buffers[0], 0, chunkSize, null);
    for (;;) {
      const { bytesRead } = await pending;
      if (bytesRead === 0) break;
      const chunk = buffers[current as 0 | 1];
      current ^= 1;
      pending = handle.read(buffers[current as 0 | 1], 0, chunkSize, null);
      onChunk(bytesRead === chunkSize ? chunk : chunk.subarray(0, bytesRead));
      done += bytesRead;
      onProgress?.(done, Math.max(size, done));
    }
  } catch (error) {
    throw error instanceof FileAccessError ? error : fileAccessError(error, path, what);
  } finally {
    await handle.close();
  }
}

/** Throws a FileAccessError unless `path` is a regular file this process can open for reading. */
export async function assertReadableFile(path: string, what: string): Promise<void> {
  const { handle } = await openRegularFile(path, what);
  await handle.close();
}

/** A text file's content, or undefined when there is no such file; any other failure is a FileAccessError naming it. */
export async function readTextIfExists(path: string, what: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fileAccessError(error, path, what);
  }
}
