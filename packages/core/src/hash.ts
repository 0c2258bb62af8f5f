import { createHash } from 'node:crypto';
import { forEachChunk } from './files.js';

/** The SHA-256 of a regular file as lowercase hex, read in chunks (a 4 GiB image never sits in memory). */
export async function sha256File(path: string, what = 'file'): Promise<string> {
  const hash = createHash('sha256');
  await forEachChunk(path, what, (chunk) => hash.update(chunk));
  return hash.digest('hex');
}
