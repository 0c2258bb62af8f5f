/**
 * The core of `psyopsOS-write-bootmedia`: an ISO verified against its minisign signature before a
 * byte is written, copied to a target, fsynced, and read back to compare. The device side (finding
 * the boot disk, its checks, unmounting) is block-devices.ts; a target is anything writable here.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { readSignatureFile, verifyFile, type PublicKey } from '@psyops/signing';
import { BootMediaSignatureError, BootMediaWriteError } from './errors.js';

const CHUNK = 4 * 1024 * 1024;

/** Where the ISO goes: a block device on the node, any writable file in tests. */
export interface BootMediaTarget {
  path: string;
  /** Called after the write is synced, before reading back: drop cached pages so the read-back comes from the device. */
  beforeReadBack?(): Promise<void>;
}

/** Checks `iso` against its signature (`signature`, default ISO.minisig) with `key`; the trusted comment when it checks out. */
export async function verifyBootImage(iso: string, key: PublicKey, signature = `${iso}.minisig`): Promise<string> {
  try {
    const parsed = await readSignatureFile(signature);
    return (await verifyFile(iso, key, parsed, { source: signature })).trustedComment;
  } catch (error) {
    const why = (error instanceof Error ? error.message : String(error)).split('\n')[0];
    throw new BootMediaSignatureError(`${iso} refused, nothing written: ${why}`);
  }
}

export interface WriteReport {
  bytes: number;
  /** The ISO's SHA-256, which the read-back matched. */
  sha256: string;
  ms: number;
}

/** SHA-256 of the first `bytes` bytes of an open file. */
function hashRange(fd: number, bytes: number): string {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(CHUNK);
  for (let offset = 0; offset < bytes; ) {
    const read = readSync(fd, buffer, 0, Math.min(CHUNK, bytes - offset), offset);
    if (read === 0) break;
    hash.update(buffer.subarray(0, read));
    offset += read;
  }
  return hash.digest('hex');
}

/**
 * Copies `iso` to the start of the target (hashing what it writes), fsyncs, then reads the written
 * range back and compares its hash. The ISO must have been verified first (verifyBootImage).
 */
export async function writeBootImage(iso: string, target: BootMediaTarget, now: () => number = Date.now): Promise<WriteReport> {
  const began = now();
  const source = openSync(iso, 'r');
  let written = 0;
  let sha256: string;
  try {
    const size = fstatSync(source).size;
    // r+: a block device or an existing file, written in place, never created or truncated.
    const fd = openSync(target.path, 'r+');
    try {
      const hash = createHash('sha256');
      const buffer = Buffer.allocUnsafe(CHUNK);
      while (written < size) {
        const read = readSync(source, buffer, 0, Math.min(CHUNK, size - written), written);
        if (read === 0) throw new BootMediaWriteError(`${iso} ended at ${written} of ${size} bytes while it was written`);
        const chunk = buffer.subarray(0, read);
        hash.update(chunk);
        for (let done = 0; done < read; ) done += writeSync(fd, chunk, done, read - done, written + done);
        written += read;
      }
      fsyncSync(fd);
      sha256 = hash.digest('hex');
    } catch (error) {
      if (error instanceof BootMediaWriteError) throw error;
      throw new BootMediaWriteError(`writing ${target.path} failed after ${written} bytes: ${(error as Error).message}`);
    } finally {
      closeSync(fd);
    }
  } finally {
    closeSync(source);
  }
  await target.beforeReadBack?.();
  const fd = openSync(target.path, 'r');
  let readBack: string;
  try {
    readBack = hashRange(fd, written);
  } finally {
    closeSync(fd);
  }
  if (readBack !== sha256) throw new BootMediaWriteError(`${target.path} does not read back as written (sha256 ${readBack} != ${sha256}): do not boot from it`);
  return { bytes: written, sha256, ms: now() - began };
}
