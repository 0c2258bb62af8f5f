import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { compareReleases, fileAccessError } from '@psyops/core';
import { UpdateInputError } from './errors.js';

/** The update artifacts the site publishes: `psyopsOS-<release>-<arch>.tar` (build-disk writes them). */
export const UPDATE_NAME = /^psyopsOS-([A-Za-z0-9._+~-]+)-(x86_64|aarch64)\.tar$/;

/** The slot description every update tar starts with (contract: slot content). */
export const SLOT_DESCRIPTION = 'psyopsOS-slot.json';

/** A slot description is a few KiB (one line per file): more is not one of ours. */
const MAX_SLOT_DESCRIPTION_BYTES = 1024 * 1024;
const BLOCK = 512;
/** Trusted-comment values are space-separated key=value pairs. */
const METADATA_VALUE = /^[^\s=]+$/;

export interface UpdateInput {
  path: string;
  filename: string;
  version: string;
  arch: string;
  kernel: string;
  alpine: string;
}

/** The trusted comment of an update tar's signature, exactly as the node checks it. */
export function updateTrustedComment(input: Pick<UpdateInput, 'version' | 'filename' | 'kernel' | 'alpine' | 'arch'>): string {
  return `type=psyopsOS version=${input.version} filename=${input.filename} kernel=${input.kernel} alpine=${input.alpine} arch=${input.arch}`;
}

const field = (header: Buffer, offset: number, length: number) => {
  const raw = header.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? length : end).toString('latin1');
};

/** The first ustar entry of `path`: its name and content, or why it is not one we can read. */
async function firstEntry(path: string): Promise<{ name: string; content: Buffer } | { problem: string }> {
  const handle = await open(path, 'r').catch((error: unknown) => Promise.reject(fileAccessError(error, path, 'update artifact')));
  try {
    const header = Buffer.alloc(BLOCK);
    const { bytesRead } = await handle.read(header, 0, BLOCK, 0);
    if (bytesRead < BLOCK) return { problem: 'it is shorter than one tar header' };
    if (field(header, 257, 6) !== 'ustar') return { problem: 'it is not a POSIX ustar archive' };
    // The header checksum: the sum of its bytes with the checksum field taken as spaces.
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
    if (Number.parseInt(field(header, 148, 8).trim(), 8) !== sum) return { problem: 'its first tar header has a wrong checksum' };
    const prefix = field(header, 345, 155);
    const name = prefix === '' ? field(header, 0, 100) : `${prefix}/${field(header, 0, 100)}`;
    const type = field(header, 156, 1);
    if (type !== '0' && type !== '') return { problem: `its first entry ${name} is not a regular file` };
    const size = Number.parseInt(field(header, 124, 12).trim(), 8);
    if (!Number.isSafeInteger(size) || size < 0) return { problem: 'its first tar header has no valid size' };
    if (name !== SLOT_DESCRIPTION) return { problem: `its first entry is ${name}, not ${SLOT_DESCRIPTION}` };
    if (size > MAX_SLOT_DESCRIPTION_BYTES) return { problem: `its ${SLOT_DESCRIPTION} is larger than ${MAX_SLOT_DESCRIPTION_BYTES} bytes` };
    const content = Buffer.alloc(size);
    const read = await handle.read(content, 0, size, BLOCK);
    if (read.bytesRead < size) return { problem: `it ends inside ${SLOT_DESCRIPTION}` };
    return { name, content };
  } finally {
    await handle.close();
  }
}

/**
 * Reads what an update tar's signature and pointer carry from its first entry,
 * psyopsOS-slot.json, and checks it against the file name: a tar that is not a psyopsOS slot,
 * or names another release or architecture than its file name, is refused.
 */
export async function readUpdateInput(dir: string, filename: string): Promise<UpdateInput> {
  const match = UPDATE_NAME.exec(filename);
  if (!match) throw new UpdateInputError(`${filename} is not named psyopsOS-<release>-<arch>.tar`);
  const [, release, arch] = match as unknown as [string, string, string];
  const path = join(dir, filename);
  const refuse = (problem: string) => new UpdateInputError(`${path} is not a psyopsOS update artifact: ${problem}`);
  const entry = await firstEntry(path);
  if ('problem' in entry) throw refuse(entry.problem);
  let slot: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(entry.content.toString('utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new SyntaxError('not an object');
    slot = parsed as Record<string, unknown>;
  } catch (error) {
    throw refuse(`its ${SLOT_DESCRIPTION} is not a JSON object (${(error as Error).message})`);
  }
  if (slot.format !== 'psyops-slot/1') throw refuse(`its ${SLOT_DESCRIPTION} has format ${JSON.stringify(slot.format)}, not "psyops-slot/1"`);
  const text = (key: string): string => {
    const value = slot[key];
    if (typeof value !== 'string' || !METADATA_VALUE.test(value)) throw refuse(`${SLOT_DESCRIPTION}: ${key} must be a string without spaces or "="`);
    return value;
  };
  const input = { path, filename, version: text('version'), arch: text('arch'), kernel: text('kernel'), alpine: text('alpine') };
  if (input.version !== release) throw refuse(`${SLOT_DESCRIPTION} says version ${input.version}, the file name ${release}`);
  if (input.arch !== arch) throw refuse(`${SLOT_DESCRIPTION} says arch ${input.arch}, the file name ${arch}`);
  return input;
}

/** The newest update per architecture (compareReleases), sorted by architecture. */
export function newestPerArch<T extends { arch: string; version: string }>(updates: readonly T[]): T[] {
  const newest = new Map<string, T>();
  for (const update of updates) {
    const current = newest.get(update.arch);
    if (!current || compareReleases(update.version, current.version) > 0) newest.set(update.arch, update);
  }
  return [...newest.values()].sort((a, b) => (a.arch < b.arch ? -1 : a.arch > b.arch ? 1 : 0));
}
