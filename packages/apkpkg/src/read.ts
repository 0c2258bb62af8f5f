/** Reading and verifying `.apk` files and `APKINDEX.tar.gz`, with apk-tools 2's rules. */
import { verify as cryptoVerify } from 'node:crypto';
import { ApkChecksumError, ApkFormatError, ApkSignatureError, ApkUntrustedError } from './errors.js';
import { SIGNATURE_DIGEST } from './archive.js';
import { sha1, sha256, splitGzipMembers } from './gzip.js';
import type { ApkKeyRing } from './keys.js';
import { parsePkgInfo, type PkgInfo } from './pkginfo.js';
import { readTar, type TarEntry } from './tar.js';

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

/** Parses and checks an .apk: streams, `datahash`, per-file SHA-1s, and (with `keys`) the signature. */
/** Prefixes format errors from the gzip/tar layers with the file they came from. */
function named<T>(what: string, read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof ApkFormatError && !error.message.startsWith(`${what}:`)) throw new ApkFormatError(`${what}: ${error.message}`, { cause: error });
    throw error;
  }
}

export function readPackage(bytes: Uint8Array, options: VerifyOptions & { name?: string } = {}): ApkPackage {
  const what = options.name ?? 'package';
  const members = named(what, () => splitGzipMembers(bytes));
  const trees = named(what, () => members.map((m) => readTar(m.data)));
  let index = 0;
  let signatures: SignatureEntry[] = [];
  if (trees[0]?.entries[0]?.path.startsWith('.SIGN.')) {
    signatures = signatureEntries(trees[0].entries);
    if (trees[0].endMarker) throw new ApkFormatError(`${what}: BAD archive (signature stream has end-of-archive blocks)`);
    index = 1;
  }
  const control = members[index];
  const controlTree = trees[index];
  const data = members[index + 1];
  const dataTree = trees[index + 1];
  if (!control || !controlTree || !data || !dataTree || members.length !== index + 2) {
    throw new ApkFormatError(`${what}: expected signature, control and data gzip streams, found ${members.length} stream(s)`);
  }
  if (controlTree.endMarker) throw new ApkFormatError(`${what}: BAD archive (control stream has end-of-archive blocks)`);
  const pkginfoEntry = controlTree.entries.find((e) => e.path === '.PKGINFO');
  if (!pkginfoEntry) throw new ApkFormatError(`${what}: control stream has no .PKGINFO`);
  const pkginfoText = pkginfoEntry.data.toString('utf8');
  const info = parsePkgInfo(pkginfoText);
  // With datahash (every package since 2.x) the signature and identity cover only the control
  // stream; old packages without it cover control and data together.
  const signed = info.datahash ? control.compressed : Buffer.concat([control.compressed, data.compressed]);
  if (info.datahash) {
    const actual = sha256(data.compressed).toString('hex');
    if (actual !== info.datahash.toLowerCase()) throw new ApkChecksumError(`${what}: data stream does not match datahash (${actual} != ${info.datahash})`);
  }
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
  const trustedBy = checkSignatures(what, signatures, signed, options);
  const result: ApkPackage = {
    info,
    pkginfoText,
    identity: identityOf(signed),
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

/** Parses and checks an `APKINDEX.tar.gz` (signature with `keys`, like apk's repository loading). */
export function readIndex(bytes: Uint8Array, options: VerifyOptions & { name?: string } = {}): ApkIndex {
  const what = options.name ?? 'APKINDEX';
  const members = named(what, () => splitGzipMembers(bytes));
  let signatures: SignatureEntry[] = [];
  let body = members[0]!;
  if (members.length === 2) {
    const sigTree = named(what, () => readTar(members[0]!.data));
    signatures = signatureEntries(sigTree.entries);
    if (signatures.length === 0 || sigTree.endMarker) throw new ApkFormatError(`${what}: first stream is not a signature`);
    body = members[1]!;
  } else if (members.length !== 1) {
    throw new ApkFormatError(`${what}: expected 1 or 2 gzip streams, found ${members.length}`);
  }
  const tree = named(what, () => readTar(body.data));
  const apkindex = tree.entries.find((e) => e.path === 'APKINDEX');
  if (!apkindex) throw new ApkFormatError(`${what}: no APKINDEX entry`);
  const trustedBy = checkSignatures(what, signatures, body.compressed, options);
  const result: ApkIndex = { entries: parseIndexText(apkindex.data.toString('utf8')), signatures };
  const description = tree.entries.find((e) => e.path === 'DESCRIPTION');
  if (description) result.description = description.data.toString('utf8');
  if (trustedBy) result.trustedBy = trustedBy;
  return result;
}

/** Whether bytes hold a package (.PKGINFO) or a repository index (APKINDEX). */
export function apkFileKind(bytes: Uint8Array): 'package' | 'index' {
  for (const member of splitGzipMembers(bytes)) {
    const names = readTar(member.data).entries.map((e) => e.path);
    if (names.includes('.PKGINFO')) return 'package';
    if (names.includes('APKINDEX')) return 'index';
  }
  throw new ApkFormatError('neither an APK package (.PKGINFO) nor an APKINDEX');
}
