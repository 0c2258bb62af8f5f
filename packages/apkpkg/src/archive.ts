/** The three APK streams (signature, control, data) and the APKINDEX tar, as abuild and apk write them. */
import { ApkFormatError } from './errors.js';
import { sha1 } from './gzip.js';
import { BLOCK, padding, paxRecord, tarHeader } from './tar.js';

export type DataEntryType = 'file' | 'dir' | 'symlink';

export interface DataEntry {
  /** Relative path without `./` or trailing slash. */
  path: string;
  type: DataEntryType;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** Content of a regular file, or… */
  data?: Buffer;
  /** …the file to read it from when the tar is written (big trees stay on disk). */
  source?: string;
  /** Size of `source` (for the installed size). */
  size?: number;
  /** Target of a symlink. */
  target?: string;
}

const TIMES = '11 ctime=0\n11 atime=0\n';
const RECORD_SIZE = 10240;

/** `<dir>/PaxHeaders/<base>` as GNU tar names pax headers (`./PaxHeaders/x` at the top). */
function paxHeaderName(path: string): string {
  const slash = path.lastIndexOf('/');
  const name = slash === -1 ? `./PaxHeaders/${path}` : `${path.slice(0, slash)}/PaxHeaders/${path.slice(slash + 1)}`;
  return Buffer.from(name)
    .subarray(0, 100)
    .toString('utf8')
    .replace(/\uFFFD+$/, '');
}

function paxHeader(path: string, records: string, mtime: number): Buffer[] {
  const body = Buffer.from(records, 'utf8');
  return [
    tarHeader({ name: paxHeaderName(path), mode: 0o644, size: body.length, mtime, type: 'pax', style: 'posix', noDeviceFields: true }),
    body,
    padding(body.length),
  ];
}

/** abuild-tar --hash's legacy checksum in the linkname field: 3 NULs, "APK2", NID 64 (SHA-1), size 20, digest. */
function legacyChecksum(digest: Buffer): Buffer {
  const field = Buffer.alloc(31);
  field.write('APK2', 3, 'latin1');
  field.writeUInt16LE(64, 7);
  field.writeUInt16LE(20, 9);
  digest.copy(field, 11);
  return field;
}

export function compareBytewise(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** The headers (pax + ustar) of one data entry, given its content. */
function entryHeaders(entry: DataEntry, content: Buffer | undefined, mtime: number): Buffer[] {
  let records = TIMES;
  let linkname: string | Buffer | undefined;
  if (entry.type === 'file') {
    const digest = sha1(content ?? Buffer.alloc(0));
    records += paxRecord('APK-TOOLS.checksum.SHA1', digest.toString('hex'));
    linkname = legacyChecksum(digest);
  } else if (entry.type === 'symlink') {
    records += paxRecord('APK-TOOLS.checksum.SHA1', sha1(Buffer.from(entry.target ?? '', 'utf8')).toString('hex'));
    linkname = entry.target;
  }
  return [
    ...paxHeader(entry.path, records, mtime),
    tarHeader({
      name: entry.type === 'dir' ? `${entry.path}/` : entry.path,
      mode: entry.mode,
      uid: entry.uid,
      gid: entry.gid,
      size: entry.type === 'file' ? (content?.length ?? 0) : 0,
      mtime,
      type: entry.type,
      linkname,
      uname: entry.uname,
      gname: entry.gname,
      style: 'posix',
    }),
  ];
}

/**
 * The data tar exactly as abuild 3.11 makes it (GNU tar --format=posix | abuild-tar --hash):
 * byte-wise sorted paths, a pax header per entry (ctime/atime, plus APK-TOOLS.checksum.SHA1 for
 * files and symlinks), end blocks padded to a 10240-byte record. Yields it piece by piece; file
 * contents are read (`readContent`) one file at a time, so a big tree never sits in memory.
 */
export async function* dataTarStream(entries: readonly DataEntry[], mtime: number, readContent: (entry: DataEntry) => Promise<Buffer>): AsyncGenerator<Buffer> {
  let length = 0;
  const sorted = [...entries].sort((a, b) => compareBytewise(a.path, b.path));
  for (const entry of sorted) {
    const content = entry.type === 'file' ? (entry.data ?? (await readContent(entry))) : undefined;
    for (const part of entryHeaders(entry, content, mtime)) {
      length += part.length;
      yield part;
    }
    if (content && content.length > 0) {
      const pad = padding(content.length);
      length += content.length + pad.length;
      yield content;
      yield pad;
    }
  }
  const total = Math.ceil((length + 2 * BLOCK) / RECORD_SIZE) * RECORD_SIZE;
  yield Buffer.alloc(total - length);
}

/** The whole data tar in memory, for entries that carry their content (`data`). */
export function dataTar(entries: readonly DataEntry[], mtime: number): Buffer {
  const parts: Buffer[] = [];
  const sorted = [...entries].sort((a, b) => compareBytewise(a.path, b.path));
  for (const entry of sorted) {
    parts.push(...entryHeaders(entry, entry.data, mtime));
    if (entry.type === 'file' && entry.data) parts.push(entry.data, padding(entry.data.length));
  }
  const length = parts.reduce((n, p) => n + p.length, 0);
  const total = Math.ceil((length + 2 * BLOCK) / RECORD_SIZE) * RECORD_SIZE;
  parts.push(Buffer.alloc(total - length));
  return Buffer.concat(parts);
}

export interface ControlFile {
  name: string;
  data: Buffer;
  mode: number;
}

/** Control tar: `.PKGINFO` then scripts, each with GNU tar's pax header, cut (no end blocks). */
export function controlTar(files: readonly ControlFile[], mtime: number): Buffer {
  const parts: Buffer[] = [];
  for (const file of files) {
    parts.push(...paxHeader(file.name, TIMES, mtime));
    parts.push(
      tarHeader({ name: file.name, mode: file.mode, size: file.data.length, mtime, type: 'file', uname: 'root', gname: 'root', style: 'posix' }),
      file.data,
      padding(file.data.length),
    );
  }
  return Buffer.concat(parts);
}

export type SignatureType = 'RSA' | 'RSA256' | 'RSA512';
export const SIGNATURE_DIGEST: Record<string, 'sha1' | 'sha256' | 'sha512'> = { RSA: 'sha1', RSA256: 'sha256', RSA512: 'sha512' };

/** Signature tar: one `.SIGN.<type>.<keyName>` entry, GNU header, cut (abuild-sign). */
export function signatureTar(type: SignatureType, keyName: string, signature: Buffer, mtime: number): Buffer {
  const name = `.SIGN.${type}.${keyName}`;
  if (Buffer.byteLength(name) > 100) throw new ApkFormatError(`signature entry name too long: ${name}`);
  return Buffer.concat([tarHeader({ name, mode: 0o644, size: signature.length, mtime, type: 'file', style: 'gnu' }), signature, padding(signature.length)]);
}

/** Index tar like `apk index`: DESCRIPTION (if any), APKINDEX, two end blocks. */
export function indexTar(description: string | undefined, apkindex: string, mtime: number): Buffer {
  const parts: Buffer[] = [];
  const add = (name: string, text: string): void => {
    const data = Buffer.from(text, 'utf8');
    parts.push(
      tarHeader({ name, mode: 0o644, size: data.length, mtime, type: 'file', uname: 'root', gname: 'root', style: 'apk' }),
      data,
      padding(data.length),
    );
  };
  if (description !== undefined && description !== '') add('DESCRIPTION', description);
  add('APKINDEX', apkindex);
  parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}
