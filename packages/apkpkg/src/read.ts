/** Reading and verifying `.apk` files and `APKINDEX.tar.gz`, with apk-tools 2's rules. */
import { verify as cryptoVerify } from 'node:crypto';
import { ApkChecksumError, ApkFormatError, ApkSignatureError, ApkTooLargeError, ApkUntrustedError } from './errors.js';
import { SIGNATURE_DIGEST } from './archive.js';
import { asBuffer, type GzipMember, type InflateLimit, inflateMember, sha1, sha256 } from './gzip.js';
import type { ApkKeyRing } from './keys.js';
import { parsePkgInfo, type PkgInfo } from './pkginfo.js';
import { readTar, type TarEntry, type TarReadResult } from './tar.js';

export interface VerifyOptions {
  /**
   * Trusted public keys by file name. When given, the signature must be made by one of them
   * (else ApkUntrustedError, unless allowUntrusted). When omitted, signatures are not checked
   * (but every internal hash still is).
   */
  keys?: ApkKeyRing;
  /** Accept unsigned input or input signed by unknown keys (a wrong signature by a known key still fails). */
  allowUntrusted?: boolean;
}

/**
 * Caps on what each gzip stream may inflate to, so a hostile file cannot exhaust memory. Raise
 * one only for a genuine file that exceeds it (the error names the option).
 */
export interface InflateLimits {
  /** The index stream of an APKINDEX (default 64 MiB; Alpine's largest, community, is about 10 MiB). */
  maxIndexBytes?: number;
  /** A package's signature or control stream (default 4 MiB; real ones are a few KiB). */
  maxControlBytes?: number;
  /** A package's data stream (default: twice the `.PKGINFO` `size`, the installed size, plus 64 MiB). */
  maxDataBytes?: number;
}

const MIB = 1 << 20;
export const DEFAULT_MAX_INDEX_BYTES = 64 * MIB;
export const DEFAULT_MAX_CONTROL_BYTES = 4 * MIB;
/** A tar is bigger than the installed size only by headers (1.5 KiB per entry with its checksum record): the slack covers that. */
const DATA_SLACK_BYTES = 64 * MIB;

export interface ReadPackageOptions extends VerifyOptions, InflateLimits {
  /** Names the file in errors. */
  name?: string;
  /**
   * The package's index entry: its `C:` identity and `S:` size are checked before the data stream
   * is inflated (for repository packages the identity from the signed index is what is trusted).
   */
  indexEntry?: Pick<IndexEntry, 'identity' | 'size'>;
}

export interface ReadIndexOptions extends VerifyOptions, Pick<InflateLimits, 'maxIndexBytes'> {
  /** Names the file in errors. */
  name?: string;
}

export interface SignatureEntry {
  /** `RSA`, `RSA256`, `RSA512`, `DSA`… */
  type: string;
  keyName: string;
  signature: Buffer;
}

/** A file of a package's data stream: its tar header fields, plus what apk adds. */
export interface ApkFileEntry extends Pick<TarEntry, 'path' | 'type' | 'mode' | 'uid' | 'gid' | 'uname' | 'gname' | 'size'> {
  /** Symlink or hardlink target. */
  target?: string;
  /** SHA-1 hex from the APK-TOOLS.checksum.SHA1 pax record. */
  sha1?: string;
}

export interface ApkPackage {
  info: PkgInfo;
  pkginfoText: string;
  /** `Q1` + base64 SHA-1 of the control member: the `C:` of an index entry. */
  identity: string;
  /** Size of the .apk file in bytes (the index's `S:`). */
  fileSize: number;
  signatures: SignatureEntry[];
  /** Key file name whose signature was verified, or undefined (not checked / untrusted). */
  trustedBy?: string;
  /** Install scripts by control file name (`.post-install`…). */
  scripts: Record<string, Buffer>;
  files: ApkFileEntry[];
  /** Tar entries of the data stream, with content (for extraction). */
  dataEntries: TarEntry[];
}

function signatureEntries(entries: TarEntry[]): SignatureEntry[] {
  return entries
    .filter((e) => e.path.startsWith('.SIGN.'))
    .map((e) => {
      const rest = e.path.slice('.SIGN.'.length);
      const dot = rest.indexOf('.');
      return { type: dot === -1 ? rest : rest.slice(0, dot), keyName: dot === -1 ? '' : rest.slice(dot + 1), signature: Buffer.from(e.data) };
    });
}

/**
 * apk's choice: the first signature of a known type whose key file is in the keys directory
 * decides; others are skipped. Returns the key name, or undefined when nothing was checked.
 */
function checkSignatures(what: string, signatures: SignatureEntry[], signed: Buffer, options: VerifyOptions): string | undefined {
  if (!options.keys) return undefined;
  for (const sig of signatures) {
    const digest = SIGNATURE_DIGEST[sig.type];
    const key = options.keys.get(sig.keyName);
    if (!digest || !key) continue;
    if (!cryptoVerify(digest, signed, key, sig.signature)) {
      throw new ApkSignatureError(`${what}: BAD signature (${sig.type} by ${sig.keyName} does not match the content)`);
    }
    return sig.keyName;
  }
  if (options.allowUntrusted) return undefined;
  const names = signatures.map((s) => s.keyName).join(', ');
  throw new ApkUntrustedError(signatures.length === 0 ? `${what}: UNTRUSTED: not signed` : `${what}: UNTRUSTED: signed by ${names}, not in the keys directory`);
}

function identityOf(control: Buffer): string {
  return `Q1${sha1(control).toString('base64')}`;
}

/** Prefixes format and size errors from the gzip/tar layers with the file they came from. */
function named<T>(what: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof Error && error.message.startsWith(`${what}:`)) throw error;
    if (error instanceof ApkFormatError) throw new ApkFormatError(`${what}: ${error.message}`, { cause: error });
    if (error instanceof ApkTooLargeError) throw new ApkTooLargeError(`${what}: ${error.message}`, error.limit, { cause: error });
    throw error;
  }
}

/**
 * Parses and checks an .apk: streams, `datahash`, per-file SHA-1s, and (with `keys`) the
 * signature. Everything that can be checked on compressed bytes (signature, identity, size,
 * datahash) is checked before the data stream is inflated, and every stream is inflated under a
 * cap (InflateLimits), so a hostile file costs at most the control cap before it is refused.
 */
export function readPackage(bytes: Uint8Array, options: ReadPackageOptions = {}): ApkPackage {
  const what = options.name ?? 'package';
  const file = asBuffer(bytes);
  const expected = options.indexEntry;
  const controlLimit: InflateLimit = { bytes: options.maxControlBytes ?? DEFAULT_MAX_CONTROL_BYTES, what: 'control stream', option: 'maxControlBytes' };
  // The first stream is the signature, or the control stream of an unsigned package.
  const first = named(what, () => inflateMember(file, 0, { ...controlLimit, what: 'first stream' }));
  const firstTree = named(what, () => readTar(first.data));
  let signatures: SignatureEntry[] = [];
  let control: GzipMember = first;
  let controlTree = firstTree;
  if (firstTree.entries[0]?.path.startsWith('.SIGN.')) {
    signatures = signatureEntries(firstTree.entries);
    if (firstTree.endMarker) throw new ApkFormatError(`${what}: BAD archive (signature stream has end-of-archive blocks)`);
    control = named(what, () => inflateMember(file, first.compressed.length, controlLimit));
    controlTree = named(what, () => readTar(control.data));
  }
  const controlStart = control === first ? 0 : first.compressed.length;
  const dataStart = controlStart + control.compressed.length;
  if (dataStart >= file.length) throw new ApkFormatError(`${what}: expected signature, control and data gzip streams, found no data stream`);
  if (controlTree.endMarker) throw new ApkFormatError(`${what}: BAD archive (control stream has end-of-archive blocks)`);
  const pkginfoEntry = controlTree.entries.find((e) => e.path === '.PKGINFO');
  if (!pkginfoEntry) throw new ApkFormatError(`${what}: control stream has no .PKGINFO`);
  const pkginfoText = pkginfoEntry.data.toString('utf8');
  const info = parsePkgInfo(pkginfoText);
  // With datahash (every package since 2.x) the signature and identity cover only the control
  // stream; old packages without it cover control and data together (the rest of the file).
  const dataCompressed = file.subarray(dataStart);
  const signed = info.datahash ? control.compressed : file.subarray(controlStart);
  const trustedBy = checkSignatures(what, signatures, signed, options);
  const identity = identityOf(signed);
  if (expected && identity !== expected.identity)
    throw new ApkChecksumError(`${what}: package checksum ${identity} does not match the index (${expected.identity})`);
  if (expected?.size && file.length !== expected.size) throw new ApkChecksumError(`${what}: size ${file.length} does not match the index (${expected.size})`);
  if (info.datahash) {
    const actual = sha256(dataCompressed).toString('hex');
    if (actual !== info.datahash.toLowerCase()) throw new ApkChecksumError(`${what}: data stream does not match datahash (${actual} != ${info.datahash})`);
  }
  const dataLimit: InflateLimit = { bytes: options.maxDataBytes ?? 2 * (info.size ?? 0) + DATA_SLACK_BYTES, what: 'data stream', option: 'maxDataBytes' };
  const data = named(what, () => inflateMember(file, dataStart, dataLimit));
  if (dataStart + data.compressed.length !== file.length) {
    throw new ApkFormatError(`${what}: expected signature, control and data gzip streams, found more after the data stream`);
  }
  const dataTree = named(what, () => readTar(data.data));
  const files: ApkFileEntry[] = [];
  for (const entry of dataTree.entries) {
    const checksum = entry.pax['APK-TOOLS.checksum.SHA1'];
    if (checksum !== undefined) {
      const content = entry.type === 'symlink' ? Buffer.from(entry.linkname, 'utf8') : entry.data;
      if (entry.type === 'file' || entry.type === 'symlink') {
        const actual = sha1(content).toString('hex');
        if (actual !== checksum.toLowerCase()) throw new ApkChecksumError(`${what}: ${entry.path} does not match its checksum`);
      }
    }
    const file: ApkFileEntry = {
      path: entry.path,
      type: entry.type,
      mode: entry.mode,
      uid: entry.uid,
      gid: entry.gid,
      uname: entry.uname,
      gname: entry.gname,
      size: entry.size,
    };
    if (entry.type === 'symlink' || entry.type === 'hardlink') file.target = entry.linkname;
    if (checksum !== undefined) file.sha1 = checksum.toLowerCase();
    files.push(file);
  }
  const scripts: Record<string, Buffer> = {};
  for (const entry of controlTree.entries) if (entry.path !== '.PKGINFO' && entry.path.startsWith('.')) scripts[entry.path] = Buffer.from(entry.data);
  const result: ApkPackage = {
    info,
    pkginfoText,
    identity,
    fileSize: bytes.byteLength,
    signatures,
    scripts,
    files,
    dataEntries: dataTree.entries,
  };
  if (trustedBy) result.trustedBy = trustedBy;
  return result;
}

/** One package block of an APKINDEX. */
export interface IndexEntry {
  /** `C:` package identity (`Q1…`). */
  identity: string;
  name: string;
  version: string;
  arch?: string;
  /** `S:` .apk file size. */
  size: number;
  /** `I:` installed size. */
  installedSize: number;
  description: string;
  url: string;
  license: string;
  origin?: string;
  maintainer?: string;
  buildTime?: number;
  commit?: string;
  providerPriority?: number;
  depends: string[];
  provides: string[];
  installIf: string[];
  /** `r:` replaces: names whose files this package may overwrite (file ownership only, not resolution). */
  replaces?: string[];
}

export interface ApkIndex {
  description?: string;
  entries: IndexEntry[];
  signatures: SignatureEntry[];
  trustedBy?: string;
}

/** Parses APKINDEX text (blocks of `X:value` lines separated by empty lines). */
function parseIndexText(text: string): IndexEntry[] {
  const entries: IndexEntry[] = [];
  for (const block of text.split(/\n\n+/)) {
    if (block.trim() === '') continue;
    const fields = new Map<string, string>();
    for (const line of block.split('\n')) {
      if (line.length < 2 || line[1] !== ':') continue; // apk ignores such lines
      fields.set(line[0]!, line.slice(2));
    }
    const name = fields.get('P');
    const version = fields.get('V');
    const identity = fields.get('C');
    if (!name || !version || !identity) throw new ApkFormatError(`APKINDEX entry without C:, P: or V: (${block.split('\n')[0]})`);
    const number = (letter: string): number | undefined => {
      const value = fields.get(letter);
      if (value === undefined) return undefined;
      if (!/^\d+$/.test(value)) throw new ApkFormatError(`APKINDEX entry ${name}: ${letter}: is not a number`);
      return Number(value);
    };
    const list = (letter: string): string[] => (fields.get(letter) ?? '').split(' ').filter((v) => v !== '');
    const entry: IndexEntry = {
      identity,
      name,
      version,
      size: number('S') ?? 0,
      installedSize: number('I') ?? 0,
      description: fields.get('T') ?? '',
      url: fields.get('U') ?? '',
      license: fields.get('L') ?? '',
      depends: list('D'),
      provides: list('p'),
      installIf: list('i'),
    };
    const optional: [keyof IndexEntry, string][] = [
      ['arch', 'A'],
      ['origin', 'o'],
      ['maintainer', 'm'],
      ['commit', 'c'],
    ];
    for (const [key, letter] of optional) {
      const value = fields.get(letter);
      if (value !== undefined) (entry as unknown as Record<string, unknown>)[key] = value;
    }
    const buildTime = number('t');
    if (buildTime !== undefined) entry.buildTime = buildTime;
    const priority = number('k');
    if (priority !== undefined) entry.providerPriority = priority;
    const replaces = list('r');
    if (replaces.length > 0) entry.replaces = replaces;
    entries.push(entry);
  }
  return entries;
}

/** APKINDEX text in apk index's field order; entries are written in the order given. */
export function formatIndexText(entries: readonly IndexEntry[]): string {
  let text = '';
  for (const e of entries) {
    const lines = [`C:${e.identity}`, `P:${e.name}`, `V:${e.version}`];
    if (e.arch) lines.push(`A:${e.arch}`);
    lines.push(`S:${e.size}`, `I:${e.installedSize}`, `T:${e.description}`, `U:${e.url}`, `L:${e.license}`);
    if (e.origin) lines.push(`o:${e.origin}`);
    if (e.maintainer) lines.push(`m:${e.maintainer}`);
    if (e.buildTime) lines.push(`t:${e.buildTime}`);
    if (e.commit) lines.push(`c:${e.commit}`);
    if (e.providerPriority) lines.push(`k:${e.providerPriority}`);
    if (e.depends.length > 0) lines.push(`D:${e.depends.join(' ')}`);
    if (e.provides.length > 0) lines.push(`p:${e.provides.join(' ')}`);
    if (e.installIf.length > 0) lines.push(`i:${e.installIf.join(' ')}`);
    text += `${lines.join('\n')}\n\n`;
  }
  return text;
}

/** The index entry apk index would write for a package (A: replaced by `arch` when given). */
export function indexEntryOf(pkg: ApkPackage, arch?: string): IndexEntry {
  const { info } = pkg;
  const entry: IndexEntry = {
    identity: pkg.identity,
    name: info.pkgname,
    version: info.pkgver,
    size: pkg.fileSize,
    installedSize: info.size ?? 0,
    description: info.pkgdesc ?? '',
    url: info.url ?? '',
    license: info.license ?? '',
    depends: info.depend.map(normalizeDependencyToken),
    provides: info.provides.map(normalizeDependencyToken),
    installIf: info.install_if.map(normalizeDependencyToken),
  };
  const a = arch ?? info.arch;
  if (a) entry.arch = a;
  if (info.origin) entry.origin = info.origin;
  if (info.maintainer) entry.maintainer = info.maintainer;
  if (info.builddate) entry.buildTime = info.builddate;
  if (info.commit) entry.commit = info.commit;
  if (info.provider_priority) entry.providerPriority = info.provider_priority;
  return entry;
}

/** apk re-serialises dependencies: `=~` is written back as `~`. */
function normalizeDependencyToken(token: string): string {
  return token.replace(/^([^<>=~]+)(=~|~=)/, '$1~');
}

/** apk index order: names case-insensitively, then byte-wise, then versions ascending. */
export function sortIndexEntries(entries: IndexEntry[], compare: (a: string, b: string) => number): IndexEntry[] {
  return entries.sort((a, b) => {
    const la = a.name.toLowerCase();
    const lb = b.name.toLowerCase();
    if (la !== lb) return la < lb ? -1 : 1;
    if (a.name !== b.name) return a.name < b.name ? -1 : 1;
    return compare(a.version, b.version);
  });
}

/**
 * Parses and checks an `APKINDEX.tar.gz` (signature with `keys`, like apk's repository loading).
 * The index stream is the rest of the file after the signature stream, so the signature is
 * checked on its compressed bytes before it is inflated (under `maxIndexBytes`).
 */
export function readIndex(bytes: Uint8Array, options: ReadIndexOptions = {}): ApkIndex {
  const what = options.name ?? 'APKINDEX';
  const file = asBuffer(bytes);
  const indexLimit: InflateLimit = { bytes: options.maxIndexBytes ?? DEFAULT_MAX_INDEX_BYTES, what: 'index stream', option: 'maxIndexBytes' };
  const signatureStream = findSignatureStream(what, file);
  let signatures: SignatureEntry[] = [];
  let bodyStart = 0;
  if (signatureStream) {
    signatures = signatureEntries(signatureStream.tree.entries);
    if (signatureStream.tree.endMarker) throw new ApkFormatError(`${what}: first stream is not a signature`);
    bodyStart = signatureStream.member.compressed.length;
    if (bodyStart >= file.length) throw new ApkFormatError(`${what}: expected 1 or 2 gzip streams, found only a signature`);
  }
  const trustedBy = checkSignatures(what, signatures, file.subarray(bodyStart), options);
  const body = named(what, () => inflateMember(file, bodyStart, indexLimit));
  if (bodyStart + body.compressed.length !== file.length) throw new ApkFormatError(`${what}: expected 1 or 2 gzip streams, found more`);
  const tree = named(what, () => readTar(body.data));
  const apkindex = tree.entries.find((e) => e.path === 'APKINDEX');
  if (!apkindex) throw new ApkFormatError(`${what}: no APKINDEX entry`);
  const result: ApkIndex = { entries: parseIndexText(apkindex.data.toString('utf8')), signatures };
  const description = tree.entries.find((e) => e.path === 'DESCRIPTION');
  if (description) result.description = description.data.toString('utf8');
  if (trustedBy) result.trustedBy = trustedBy;
  return result;
}

/** A signature tar holds a few small entries: a first stream bigger than this is the index itself. */
const MAX_SIGNATURE_STREAM_BYTES = 1 * MIB;

/**
 * The signature stream at the start of an index, or undefined when the file starts with its
 * index stream (unsigned). Inflates at most MAX_SIGNATURE_STREAM_BYTES of the first stream, so
 * an unsigned bomb is not inflated here.
 */
function findSignatureStream(what: string, file: Buffer): { member: GzipMember; tree: TarReadResult } | undefined {
  let member: GzipMember;
  try {
    member = named(what, () => inflateMember(file, 0, { bytes: MAX_SIGNATURE_STREAM_BYTES, what: 'signature stream', option: 'never reported' }));
  } catch (error) {
    if (error instanceof ApkTooLargeError) return undefined;
    throw error;
  }
  if (member.compressed.length === file.length) return undefined; // one stream: the index, unsigned
  const tree = named(what, () => readTar(member.data));
  if (!tree.entries[0]?.path.startsWith('.SIGN.')) throw new ApkFormatError(`${what}: first stream is not a signature`);
  return { member, tree };
}

/** Whether bytes hold a package (.PKGINFO) or a repository index (APKINDEX). */
export function apkFileKind(bytes: Uint8Array): 'package' | 'index' {
  const file = asBuffer(bytes);
  // Both names sit in the first or second stream: the data stream is never inflated.
  let offset = 0;
  for (let stream = 0; stream < 2 && offset < file.length; stream++) {
    const member = inflateMember(file, offset, { bytes: DEFAULT_MAX_INDEX_BYTES, what: 'control or index stream', option: 'maxIndexBytes' });
    const names = readTar(member.data).entries.map((e) => e.path);
    if (names.includes('.PKGINFO')) return 'package';
    if (names.includes('APKINDEX')) return 'index';
    offset += member.compressed.length;
  }
  throw new ApkFormatError('neither an APK package (.PKGINFO) nor an APKINDEX');
}
