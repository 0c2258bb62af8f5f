/**
 * The small tar writer/reader APK streams need. Generic tar libraries cannot write what apk
 * expects byte for byte (cut archives without end blocks, GNU vs POSIX magic per stream, pax
 * records with APK-TOOLS checksums, abuild's legacy checksum in linkname), so it is done here.
 */
import { ApkFormatError } from './errors.js';

export const BLOCK = 512;

export type TarType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'pax' | 'char' | 'block' | 'fifo' | 'other';

const TYPEFLAG: Record<string, string> = { file: '0', dir: '5', symlink: '2', hardlink: '1', pax: 'x', char: '3', block: '4', fifo: '6' };

export interface TarHeader {
  name: string;
  mode: number;
  uid?: number;
  gid?: number;
  size: number;
  mtime: number;
  type: TarType;
  /** Link target, or raw bytes (abuild stores a legacy checksum there for regular files). */
  linkname?: string | Uint8Array;
  uname?: string;
  gname?: string;
  /**
   * 'posix': magic `ustar\0` `00`, numbers as 7/11 octal digits + NUL, device fields `0000000\0`
   * (GNU tar --format=posix). 'gnu': magic `ustar  \0` and empty device fields (GNU tar default
   * format, used by abuild for signatures). 'apk': like 'gnu' but size and mtime as 12 octal
   * digits without NUL (apk-tools' own tar writer, used for APKINDEX).
   */
  style: 'posix' | 'gnu' | 'apk';
  /** Leave device major/minor fields empty (pax headers written by GNU tar). */
  noDeviceFields?: boolean;
}

function writeString(block: Buffer, offset: number, length: number, value: string | Uint8Array): void {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  if (bytes.length > length) throw new ApkFormatError(`tar field too long (${bytes.length} > ${length} bytes): ${String(value)}`);
  block.set(bytes, offset);
}

function octal(value: number, digits: number, nul: boolean): string {
  const text = value.toString(8).padStart(digits, '0');
  if (text.length > digits) throw new ApkFormatError(`number ${value} does not fit in a tar header field`);
  return nul ? `${text}\0` : text;
}

/** Splits a long path into ustar prefix + name; undefined when it cannot be split. */
function splitName(name: string): { prefix: string; name: string } | undefined {
  if (Buffer.byteLength(name) <= 100) return { prefix: '', name };
  for (let i = name.length - 1; i > 0; i--) {
    if (name[i] !== '/') continue;
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest.length > 0) return { prefix, name: rest };
  }
  return undefined;
}

export function tarHeader(h: TarHeader): Buffer {
  const block = Buffer.alloc(BLOCK);
  const split = splitName(h.name);
  if (!split) throw new ApkFormatError(`path too long for a tar header: ${h.name}`);
  writeString(block, 0, 100, split.name);
  const wide = h.style === 'apk';
  writeString(block, 100, 8, octal(h.mode & 0o7777, 7, true));
  writeString(block, 108, 8, octal(h.uid ?? 0, 7, true));
  writeString(block, 116, 8, octal(h.gid ?? 0, 7, true));
  writeString(block, 124, 12, wide ? octal(h.size, 12, false) : octal(h.size, 11, true));
  writeString(block, 136, 12, wide ? octal(h.mtime, 12, false) : octal(h.mtime, 11, true));
  const typeflag = TYPEFLAG[h.type];
  if (!typeflag) throw new ApkFormatError(`cannot write tar entry type ${h.type}`);
  writeString(block, 156, 1, typeflag);
  if (h.linkname !== undefined) writeString(block, 157, 100, h.linkname);
  if (h.style === 'posix') {
    writeString(block, 257, 8, 'ustar\u000000');
  } else {
    writeString(block, 257, 8, 'ustar  \0');
  }
  if (h.uname) writeString(block, 265, 32, h.uname);
  if (h.gname) writeString(block, 297, 32, h.gname);
  if (h.style === 'posix' && !h.noDeviceFields) {
    writeString(block, 329, 8, octal(0, 7, true));
    writeString(block, 337, 8, octal(0, 7, true));
  }
  if (split.prefix) writeString(block, 345, 155, split.prefix);
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  writeString(block, 148, 8, `${octal(sum, 6, true)} `);
  return block;
}

export function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

/** One pax record: `<len> <key>=<value>\n`, where len counts the whole record. */
export function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length) length = String(length).length + Buffer.byteLength(body);
  return `${length}${body}`;
}

export interface TarEntry {
  /** Path as stored (prefix + name, or pax `path`), directories without the trailing slash. */
  path: string;
  /** Name field as written, for diagnostics (directories keep their `/`). */
  rawName: string;
  type: TarType;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  size: number;
  mtime: number;
  linkname: string;
  pax: Record<string, string>;
  data: Buffer;
  /** Offset of the entry's first header (pax header included) in the uncompressed stream. */
  offset: number;
  /** Offset just past the entry's data padding. */
  end: number;
}

function readString(block: Buffer, offset: number, length: number): string {
  const field = block.subarray(offset, offset + length);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? length : nul).toString('utf8');
}

function readOctal(block: Buffer, offset: number, length: number, what: string): number {
  const field = block.subarray(offset, offset + length);
  if ((field[0] ?? 0) & 0x80) {
    // GNU base-256 encoding for big numbers.
    let value = 0;
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] ?? 0);
    return value;
  }
  const text = field.toString('latin1').replace(/\0.*$/s, '').trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new ApkFormatError(`tar header has a bad ${what} field`);
  return parseInt(text, 8);
}

function parsePax(data: Buffer): Record<string, string> {
  const records: Record<string, string> = {};
  let offset = 0;
  while (offset < data.length) {
    const space = data.indexOf(0x20, offset);
    if (space === -1) break;
    const length = Number(data.subarray(offset, space).toString('latin1'));
    if (!Number.isInteger(length) || length <= 0 || offset + length > data.length) throw new ApkFormatError('malformed pax header record');
    const record = data.subarray(space + 1, offset + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq === -1) throw new ApkFormatError('malformed pax header record');
    records[record.slice(0, eq)] = record.slice(eq + 1);
    offset += length;
  }
  return records;
}

const TYPES: Record<string, TarType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '5': 'dir',
  '2': 'symlink',
  '1': 'hardlink',
  '3': 'char',
  '4': 'block',
  '6': 'fifo',
};

export interface TarReadResult {
  entries: TarEntry[];
  /** True when the stream ended with an all-zero header block (end-of-archive marker). */
  endMarker: boolean;
  /** Offset where the end marker starts (or the stream length). */
  endOffset: number;
}

/**
 * Reads a tar stream (one buffer). Like apk, stops at the first all-zero header. Pax `x`
 * headers and GNU long names (`L`/`K`) are folded into the entry that follows.
 */
export function readTar(stream: Buffer, options: { maxEntries?: number } = {}): TarReadResult {
  const entries: TarEntry[] = [];
  const maxEntries = options.maxEntries ?? 1_000_000;
  let offset = 0;
  let pending: Record<string, string> = {};
  let pendingStart = -1;
  let longName: string | undefined;
  let longLink: string | undefined;
  while (offset < stream.length) {
    if (entries.length >= maxEntries) throw new ApkFormatError(`tar stream has more than ${maxEntries} entries`);
    if (offset + BLOCK > stream.length) throw new ApkFormatError('tar stream truncated inside a header');
    const block = stream.subarray(offset, offset + BLOCK);
    if (block.every((b) => b === 0)) return { entries, endMarker: true, endOffset: offset };
    const stored = readOctal(block, 148, 8, 'checksum');
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
    if (sum !== stored) throw new ApkFormatError(`tar header checksum mismatch at offset ${offset}`);
    if (block.subarray(257, 262).toString('latin1') !== 'ustar') throw new ApkFormatError(`tar header without ustar magic at offset ${offset}`);
    const size = readOctal(block, 124, 12, 'size');
    const dataStart = offset + BLOCK;
    const dataEnd = dataStart + size;
    if (dataEnd > stream.length) throw new ApkFormatError('tar stream truncated inside an entry');
    const data = stream.subarray(dataStart, dataEnd);
    const next = dataStart + Math.ceil(size / BLOCK) * BLOCK;
    const typeflag = String.fromCharCode(block[156] ?? 0);
    if (pendingStart === -1) pendingStart = offset;
    if (typeflag === 'x') {
      pending = { ...pending, ...parsePax(data) };
      offset = next;
      continue;
    }
    if (typeflag === 'g') {
      offset = next;
      continue;
    }
    if (typeflag === 'L' || typeflag === 'K') {
      const value = data.toString('utf8').replace(/\0+$/, '');
      if (typeflag === 'L') longName = value;
      else longLink = value;
      offset = next;
      continue;
    }
    const name = readString(block, 0, 100);
    const prefix = block.subarray(257, 263).toString('latin1') === 'ustar\0' ? readString(block, 345, 155) : '';
    const rawName = pending.path ?? longName ?? (prefix ? `${prefix}/${name}` : name);
    const linkField = block.subarray(157, 257);
    const linkname = pending.linkpath ?? longLink ?? readString(block, 157, 100);
    const type = TYPES[typeflag] ?? 'other';
    entries.push({
      path: rawName.replace(/\/+$/, ''),
      rawName,
      type,
      typeflag,
      mode: readOctal(block, 100, 8, 'mode'),
      uid: readOctal(block, 108, 8, 'uid'),
      gid: readOctal(block, 116, 8, 'gid'),
      uname: readString(block, 265, 32),
      gname: readString(block, 297, 32),
      size,
      mtime: readOctal(block, 136, 12, 'mtime'),
      linkname: type === 'symlink' || type === 'hardlink' ? linkname : linkField[0] === 0 ? '' : linkname,
      pax: pending,
      data,
      offset: pendingStart,
      end: next,
    });
    pending = {};
    pendingStart = -1;
    longName = undefined;
    longLink = undefined;
    offset = next;
  }
  if (pendingStart !== -1) throw new ApkFormatError('tar stream ends after an extended header');
  return { entries, endMarker: false, endOffset: stream.length };
}
