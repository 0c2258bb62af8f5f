/**
 * The little of ELF that psyops reads: whether a program needs a dynamic loader (PT_INTERP) and
 * the bytes of a named section (a kernel module's `.modinfo`). 32- and 64-bit, either byte order.
 * A path is read in pieces (a 100 MB program is not loaded for its headers); a buffer is read in place.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { ElfFormatError } from './errors.js';
import { fileAccessError } from './files.js';

const PT_INTERP = 3;
/** Longer interpreter paths or section tables are not plausible: refuse rather than allocate. */
const MAX_TABLE_BYTES = 1 << 20;

type Source = string | Uint8Array;
type Read = (offset: number, length: number) => Buffer;

interface Header {
  read: Read;
  is64: boolean;
  u16(data: Buffer, offset: number): number;
  u32(data: Buffer, offset: number): number;
  /** An address-sized field (u32 or u64) as a number. */
  word(data: Buffer, offset: number): number;
}

function withReader<T>(source: Source, what: string, use: (read: Read) => T): T {
  if (typeof source !== 'string') {
    const data = Buffer.from(source.buffer, source.byteOffset, source.byteLength);
    return use((offset, length) => {
      if (offset < 0 || offset + length > data.length) throw new ElfFormatError(`${what} is not a valid ELF file (truncated)`);
      return data.subarray(offset, offset + length);
    });
  }
  let fd: number;
  try {
    fd = openSync(source, 'r');
  } catch (error) {
    throw fileAccessError(error, source, what);
  }
  try {
    return use((offset, length) => {
      const data = Buffer.alloc(length);
      if (readSync(fd, data, 0, length, offset) !== length) throw new ElfFormatError(`${what} is not a valid ELF file (truncated): ${source}`);
      return data;
    });
  } finally {
    closeSync(fd);
  }
}

function header(read: Read, what: string): Header {
  const ident = read(0, 16);
  if (ident.readUInt32BE(0) !== 0x7f454c46 || (ident[4] !== 1 && ident[4] !== 2) || (ident[5] !== 1 && ident[5] !== 2)) {
    throw new ElfFormatError(`${what} is not an ELF file`);
  }
  const is64 = ident[4] === 2;
  const little = ident[5] === 1;
  const u16 = (data: Buffer, offset: number) => (little ? data.readUInt16LE(offset) : data.readUInt16BE(offset));
  const u32 = (data: Buffer, offset: number) => (little ? data.readUInt32LE(offset) : data.readUInt32BE(offset));
  const u64 = (data: Buffer, offset: number) => Number(little ? data.readBigUInt64LE(offset) : data.readBigUInt64BE(offset));
  return { read, is64, u16, u32, word: is64 ? u64 : u32 };
}

function table(elf: Header, offset: number, entrySize: number, count: number, what: string): Buffer {
  if (entrySize * count > MAX_TABLE_BYTES) throw new ElfFormatError(`${what} has an implausibly large ELF header table`);
  return elf.read(offset, entrySize * count);
}

/** Whether `source` starts like an ELF file (no exception for other files). */
export function isElf(source: Source, what = 'file'): boolean {
  return withReader(source, what, (read) => {
    try {
      header(read, what);
      return true;
    } catch (error) {
      if (error instanceof ElfFormatError) return false;
      throw error;
    }
  });
}

/** The program interpreter (dynamic loader) an ELF program names, or undefined for a static program. */
export function elfInterpreter(source: Source, what = 'program'): string | undefined {
  return withReader(source, what, (read) => {
    const elf = header(read, what);
    const head = read(0, elf.is64 ? 64 : 52);
    const [phoff, phentsize, phnum] = elf.is64
      ? [elf.word(head, 0x20), elf.u16(head, 0x36), elf.u16(head, 0x38)]
      : [elf.word(head, 0x1c), elf.u16(head, 0x2a), elf.u16(head, 0x2c)];
    const entries = table(elf, phoff, phentsize, phnum, what);
    for (let offset = 0; offset + phentsize <= entries.length; offset += phentsize) {
      if (elf.u32(entries, offset) !== PT_INTERP) continue;
      const [fileOffset, size] = elf.is64
        ? [elf.word(entries, offset + 0x08), elf.word(entries, offset + 0x20)]
        : [elf.word(entries, offset + 0x04), elf.word(entries, offset + 0x10)];
      if (size > 4096) throw new ElfFormatError(`${what} names an implausibly long program interpreter (${size} bytes)`);
      return read(fileOffset, size).toString('latin1').replace(/\0+$/, '');
    }
    return undefined;
  });
}

/** The bytes of the first section called `name`, or undefined when there is none. */
export function elfSection(source: Source, name: string, what = 'ELF file'): Buffer | undefined {
  return withReader(source, what, (read) => {
    const elf = header(read, what);
    const head = read(0, elf.is64 ? 64 : 52);
    const [shoff, shentsize, shnum, shstrndx] = elf.is64
      ? [elf.word(head, 0x28), elf.u16(head, 0x3a), elf.u16(head, 0x3c), elf.u16(head, 0x3e)]
      : [elf.word(head, 0x20), elf.u16(head, 0x2e), elf.u16(head, 0x30), elf.u16(head, 0x32)];
    if (shnum === 0 || shstrndx >= shnum) return undefined;
    const sections = table(elf, shoff, shentsize, shnum, what);
    const section = (index: number) => {
      const base = index * shentsize;
      return elf.is64
        ? { name: elf.u32(sections, base), offset: elf.word(sections, base + 0x18), size: elf.word(sections, base + 0x20) }
        : { name: elf.u32(sections, base), offset: elf.word(sections, base + 0x10), size: elf.word(sections, base + 0x14) };
    };
    const names = section(shstrndx);
    if (names.size > MAX_TABLE_BYTES) throw new ElfFormatError(`${what} has an implausibly large section name table`);
    const nameTable = read(names.offset, names.size);
    for (let index = 0; index < shnum; index++) {
      const entry = section(index);
      const end = nameTable.indexOf(0, entry.name);
      if (nameTable.toString('latin1', entry.name, end === -1 ? undefined : end) === name) return read(entry.offset, entry.size);
    }
    return undefined;
  });
}
