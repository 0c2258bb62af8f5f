import { createHash } from 'node:crypto';
import * as zlib from 'node:zlib';
import { constants, gzipSync, inflateRawSync } from 'node:zlib';
import { ApkFormatError } from './errors.js';

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

/** Splits concatenated gzip members (APK files are 2 or 3 of them) and inflates each one. */
export function splitGzipMembers(file: Uint8Array, maxMembers = 8): { compressed: Buffer; data: Buffer }[] {
  const buf = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  const members: { compressed: Buffer; data: Buffer }[] = [];
  let offset = 0;
  while (offset < buf.length) {
    if (members.length >= maxMembers) throw new ApkFormatError(`more than ${maxMembers} gzip members`);
    if (buf.length - offset < 18 || buf[offset] !== 0x1f || buf[offset + 1] !== 0x8b || buf[offset + 2] !== 8) {
      throw new ApkFormatError(`not a gzip stream at byte ${offset}`);
    }
    const flags = buf[offset + 3] ?? 0;
    let start = offset + 10;
    if (flags & 0x04) start += 2 + buf.readUInt16LE(start);
    if (flags & 0x08) start = buf.indexOf(0, start) + 1;
    if (flags & 0x10) start = buf.indexOf(0, start) + 1;
    if (flags & 0x02) start += 2;
    if (start <= offset || start > buf.length) throw new ApkFormatError(`corrupted gzip header at byte ${offset}`);
    let data: Buffer;
    let consumed: number;
    try {
      const result = inflateRawSync(buf.subarray(start), { info: true, finishFlush: constants.Z_SYNC_FLUSH }) as unknown as {
        buffer: Buffer;
        engine: { bytesWritten: number };
      };
      data = result.buffer;
      consumed = result.engine.bytesWritten;
    } catch (error) {
      throw new ApkFormatError(`corrupted gzip stream at byte ${offset}: ${(error as Error).message}`);
    }
    const end = start + consumed + 8;
    if (end > buf.length) throw new ApkFormatError(`gzip stream truncated at byte ${offset}`);
    const crc = buf.readUInt32LE(start + consumed);
    const isize = buf.readUInt32LE(start + consumed + 4);
    if (isize !== data.length >>> 0 || crc !== crc32(data)) throw new ApkFormatError(`gzip member at byte ${offset} fails its CRC check`);
    members.push({ compressed: buf.subarray(offset, end), data });
    offset = end;
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
