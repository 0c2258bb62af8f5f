import { createHash } from 'node:crypto';
import * as zlib from 'node:zlib';
import { constants, gzipSync, inflateRawSync } from 'node:zlib';
import { ApkFormatError, ApkTooLargeError } from './errors.js';

/**
 * gzip like abuild's `gzip -n -9`: no name, mtime 0, XFL 2, OS 3 (zlib writes exactly that
 * header). The deflate bytes may differ from GNU gzip's; apk only hashes what it is given.
 */
export function gzipMember(data: Uint8Array, level = 9): Buffer {
  return gzipSync(data, { level, memLevel: 8, windowBits: 15 });
}

/**
 * gzip of a stream of chunks into one member (same header as gzipMember), without the input in
 * memory. Returns the compressed chunks and their SHA-256, so the caller concatenates only once.
 */
export async function gzipStream(chunks: AsyncIterable<Buffer>, level = 9): Promise<{ chunks: Buffer[]; length: number; sha256: Buffer }> {
  const gzip = zlib.createGzip({ level, memLevel: 8, windowBits: 15 });
  const output: Buffer[] = [];
  const hash = createHash('sha256');
  let length = 0;
  gzip.on('data', (chunk: Buffer) => {
    output.push(chunk);
    hash.update(chunk);
    length += chunk.length;
  });
  const done = new Promise<void>((resolve, reject) => {
    gzip.on('end', resolve);
    gzip.on('error', reject);
  });
  for await (const chunk of chunks) {
    if (!gzip.write(chunk)) await new Promise<void>((resolve) => gzip.once('drain', resolve));
  }
  gzip.end();
  await done;
  return { chunks: output, length, sha256: hash.digest() };
}

export interface GzipMember {
  /** The member's bytes as they sit in the file (what signatures and checksums cover). */
  compressed: Buffer;
  data: Buffer;
}

/** An inflation cap: the bytes a member may produce, what it is and the option that raises it (for the error). */
export interface InflateLimit {
  bytes: number;
  what: string;
  option: string;
}

/** 1 GiB: `splitGzipMembers`' default cap per member. */
const DEFAULT_MEMBER_LIMIT = 1 << 30;

/** "64 MiB" for a power-of-two limit, else the byte count. */
function formatLimit(bytes: number): string {
  return bytes >= 1 << 20 && bytes % (1 << 20) === 0 ? `${bytes / (1 << 20)} MiB` : `${bytes} bytes`;
}

/**
 * Inflates the one gzip member that starts at `offset`. Its end is only known by inflating it
 * (that is how the boundaries between APK streams are found), and output beyond `limit.bytes`
 * stops the inflation with ApkTooLargeError: a gzip bomb inflates about 1000:1, so without the
 * cap a 1 MiB download could fill a gigabyte of memory.
 */
export function inflateMember(file: Buffer, offset: number, limit: InflateLimit): GzipMember {
  if (file.length - offset < 18 || file[offset] !== 0x1f || file[offset + 1] !== 0x8b || file[offset + 2] !== 8) {
    throw new ApkFormatError(`not a gzip stream at byte ${offset}`);
  }
  const flags = file[offset + 3] ?? 0;
  let start = offset + 10;
  if (flags & 0x04) start += 2 + file.readUInt16LE(start);
  if (flags & 0x08) start = file.indexOf(0, start) + 1;
  if (flags & 0x10) start = file.indexOf(0, start) + 1;
  if (flags & 0x02) start += 2;
  if (start <= offset || start > file.length) throw new ApkFormatError(`corrupted gzip header at byte ${offset}`);
  let data: Buffer;
  let consumed: number;
  try {
    const result = inflateRawSync(file.subarray(start), {
      info: true,
      finishFlush: constants.Z_SYNC_FLUSH,
      maxOutputLength: limit.bytes,
      chunkSize: 64 * 1024,
    }) as unknown as {
      buffer: Buffer;
      engine: { bytesWritten: number };
    };
    data = result.buffer;
    consumed = result.engine.bytesWritten;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new ApkTooLargeError(`${limit.what} inflates to more than ${formatLimit(limit.bytes)}, the limit (${limit.option})`, limit.bytes);
    }
    throw new ApkFormatError(`corrupted gzip stream at byte ${offset}: ${(error as Error).message}`);
  }
  const end = start + consumed + 8;
  if (end > file.length) throw new ApkFormatError(`gzip stream truncated at byte ${offset}`);
  const crc = file.readUInt32LE(start + consumed);
  const isize = file.readUInt32LE(start + consumed + 4);
  if (isize !== data.length >>> 0 || crc !== crc32(data)) throw new ApkFormatError(`gzip member at byte ${offset} fails its CRC check`);
  return { compressed: file.subarray(offset, end), data };
}

export function asBuffer(file: Uint8Array): Buffer {
  return Buffer.from(file.buffer, file.byteOffset, file.byteLength);
}

/** Splits concatenated gzip members (APK files are 2 or 3 of them) and inflates each one, each at most `maxMemberBytes`. */
export function splitGzipMembers(file: Uint8Array, options: { maxMembers?: number; maxMemberBytes?: number } = {}): GzipMember[] {
  const { maxMembers = 8, maxMemberBytes = DEFAULT_MEMBER_LIMIT } = options;
  const buf = asBuffer(file);
  const members: GzipMember[] = [];
  let offset = 0;
  while (offset < buf.length) {
    if (members.length >= maxMembers) throw new ApkFormatError(`more than ${maxMembers} gzip members`);
    const member = inflateMember(buf, offset, { bytes: maxMemberBytes, what: `gzip member at byte ${offset}`, option: 'maxMemberBytes' });
    members.push(member);
    offset += member.compressed.length;
  }
  if (members.length === 0) throw new ApkFormatError('empty file');
  return members;
}

let crcTable: Uint32Array | undefined;
/** zlib.crc32 exists from Node 20.15; the table version is the fallback. */
const nativeCrc32 = (zlib as unknown as { crc32?: (data: Uint8Array) => number }).crc32;
export function crc32(data: Uint8Array): number {
  if (nativeCrc32) return nativeCrc32(data) >>> 0;
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of data) crc = (crcTable[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

export function sha1(data: Uint8Array): Buffer {
  return createHash('sha1').update(data).digest();
}

export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}
