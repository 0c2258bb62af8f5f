/**
 * apk-tools 2's installed-package database (`lib/apk/db/installed`, `scripts.tar`, `triggers`,
 * `etc/apk/world`), written the way `apk add --root` leaves it, so a root assembled without apk
 * is one apk can later manage.
 */
import { ApkFormatError } from './errors.js';
import { BLOCK, padding, tarHeader } from './tar.js';
import { SCRIPT_NAMES } from './spec.js';
import { formatIndexText, indexEntryOf, type ApkFileEntry, type ApkPackage, type IndexEntry } from './read.js';

/** A package as installed: its repository index entry (arch, size as the repository gave them) and its contents. */
export interface InstalledPackage {
  entry: IndexEntry;
  pkg: ApkPackage;
}

/**
 * User and group ids by name from the target root's etc/passwd and etc/group: apk records a
 * file's owner by looking its tar uname/gname up there, and uses the tar's numbers only for
 * names it does not find.
 */
export interface OwnerIds {
  users: ReadonlyMap<string, number>;
  groups: ReadonlyMap<string, number>;
}

/** Names and ids of an etc/passwd or etc/group file (`name:x:id:…`); malformed lines are skipped. */
export function parseIdFile(text: string): Map<string, number> {
  const ids = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [name, , id] = line.split(':');
    if (name && id !== undefined && /^\d+$/.test(id) && !ids.has(name)) ids.set(name, Number(id));
  }
  return ids;
}

/** The owner apk records for a tar entry. */
export function ownerOf(entry: { uid: number; gid: number; uname: string; gname: string }, ids?: OwnerIds): { uid: number; gid: number } {
  return {
    uid: ids?.users.get(entry.uname) ?? entry.uid,
    gid: ids?.groups.get(entry.gname) ?? entry.gid,
  };
}

const DEFAULT_DIR_ACL = '0:0:755';
const DEFAULT_FILE_ACL = '0:0:644';

/** `uid:gid:mode` with the mode in octal without leading zero, as apk writes M: and a:. */
function acl(file: ApkFileEntry, ids: OwnerIds | undefined): string {
  const { uid, gid } = ownerOf(file, ids);
  return `${uid}:${gid}:${(file.mode & 0o7777).toString(8)}`;
}

/** apk's checksum notation: `Q1` + base64 of a SHA-1 given in hex. */
export function sha1Checksum(hex: string): string {
  return `Q1${Buffer.from(hex, 'hex').toString('base64')}`;
}

interface DirRecord {
  acl: string;
  files: { name: string; acl: string; checksum?: string }[];
}

/**
 * Directories a package owns, in archive order, each with the files it holds. Like apk, a file
 * counts only when its directory has its own entry (top-level files go under the root, `F:`
 * with an empty name); entries starting with `.` and `.keep_*` files are not installed.
 */
function ownedDirectories(pkg: ApkPackage, ids: OwnerIds | undefined, owns: (path: string) => boolean = () => true): Map<string, DirRecord> {
  const dirs = new Map<string, DirRecord>();
  const checksums = new Map<string, string>();
  for (const file of pkg.files) {
    if (file.path.startsWith('.')) continue;
    if (file.type === 'dir') {
      const record = dirs.get(file.path) ?? { acl: DEFAULT_DIR_ACL, files: [] };
      record.acl = acl(file, ids);
      dirs.set(file.path, record);
      continue;
    }
    const slash = file.path.lastIndexOf('/');
    const dir = slash === -1 ? '' : file.path.slice(0, slash);
    const name = file.path.slice(slash + 1);
    if (name.startsWith('.keep_')) continue;
    let record = dirs.get(dir);
    if (!record) {
      if (dir !== '') continue; // apk: "no dirent in archive", the file is not installed
      record = { acl: DEFAULT_DIR_ACL, files: [] };
      dirs.set(dir, record);
    }
    // A hard link is recorded with the checksum of the file it links to.
    const checksum = file.sha1 ?? (file.type === 'hardlink' && file.target ? checksums.get(file.target) : undefined);
    if (checksum) checksums.set(file.path, checksum);
    if (!owns(file.path)) continue;
    const entry: DirRecord['files'][number] = { name, acl: acl(file, ids) };
    if (checksum) entry.checksum = sha1Checksum(checksum);
    record.files.push(entry);
  }
  return dirs;
}

/**
 * One package's block of `lib/apk/db/installed`: the index fields (C P V A S I T U L o m t c k D
 * p i), then r: q: from `.PKGINFO`, then per owned directory `F:` (+ `M:` when not 0:0:755) and
 * per file `R:` (+ `a:` when not 0:0:644) and `Z:` (Q1 SHA-1); a blank line ends the block.
 */
export function formatInstalledEntry({ entry, pkg }: InstalledPackage, ids?: OwnerIds, owns?: (path: string) => boolean): string {
  const lines = [formatIndexText([entry]).replace(/\n\n$/, '')];
  if (pkg.info.replaces.length > 0) lines.push(`r:${pkg.info.replaces.join(' ')}`);
  if (pkg.info.replaces_priority) lines.push(`q:${pkg.info.replaces_priority}`);
  for (const [dir, record] of ownedDirectories(pkg, ids, owns)) {
    lines.push(`F:${dir}`);
    if (record.acl !== DEFAULT_DIR_ACL) lines.push(`M:${record.acl}`);
    for (const file of record.files) {
      lines.push(`R:${file.name}`);
      if (file.acl !== DEFAULT_FILE_ACL) lines.push(`a:${file.acl}`);
      if (file.checksum) lines.push(`Z:${file.checksum}`);
    }
  }
  return `${lines.join('\n')}\n\n`;
}

/**
 * `lib/apk/db/installed` for packages in install order. A file two packages list belongs to the
 * later one only, as apk moves a file's ownership to the package that overwrites it
 * (apk_db_migrate_files); a file the earlier owner kept must not be in the later package's list.
 */
export function formatInstalledDb(packages: readonly InstalledPackage[], ids?: OwnerIds): string {
  const lastOwner = new Map<string, number>();
  packages.forEach(({ pkg }, i) => {
    for (const file of pkg.files) if (file.type !== 'dir') lastOwner.set(file.path, i);
  });
  return packages.map((p, i) => formatInstalledEntry(p, ids, (path) => lastOwner.get(path) === i)).join('');
}

/** The installed entry for a package read from a file (index fields derived as `apk index` would). */
export function installedPackageOf(pkg: ApkPackage, arch?: string): InstalledPackage {
  return { entry: indexEntryOf(pkg, arch), pkg };
}

/**
 * `lib/apk/db/scripts.tar`: every install script as `<name>-<version>.<Q1 checksum>.<script>`
 * (mode 0755, apk's own tar headers, script kinds in apk's order), then two end blocks.
 */
export function formatScriptsTar(packages: readonly InstalledPackage[], mtime: number): Buffer {
  const parts: Buffer[] = [];
  for (const { entry, pkg } of packages) {
    for (const script of SCRIPT_NAMES) {
      const data = pkg.scripts[`.${script}`];
      if (!data) continue;
      const name = `${entry.name}-${entry.version}.${entry.identity}.${script}`;
      parts.push(
        tarHeader({ name, mode: 0o755, size: data.length, mtime, type: 'file', uname: 'root', gname: 'root', style: 'apk' }),
        data,
        padding(data.length),
      );
    }
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

/** `lib/apk/db/triggers`: `<Q1 checksum> <dir> <dir>…` for each package that declares triggers. */
export function formatTriggers(packages: readonly InstalledPackage[]): string {
  return packages
    .filter(({ pkg }) => pkg.info.triggers.length > 0)
    .map(({ entry, pkg }) => `${entry.identity} ${pkg.info.triggers.join(' ')}\n`)
    .join('');
}

/** `etc/apk/world`: one dependency per line, sorted, newline-terminated. */
export function formatWorld(world: readonly string[]): string {
  const sorted = [...new Set(world)].sort();
  return `${sorted.join('\n')}\n`;
}

/** A directory of a package's installed-database block, with its files. */
export interface InstalledDir {
  name: string;
  /** `M:` (uid:gid:mode), when not 0:0:755. */
  acl?: string;
  files: { name: string; acl?: string; checksum?: string }[];
}

/** One block of `lib/apk/db/installed` as apk reads it. */
export interface InstalledDbEntry {
  /** Index fields (`C P V A S I T U L o m t c k D p i`) by letter, as written. */
  fields: Map<string, string>;
  replaces: string[];
  replacesPriority?: number;
  /** `s:` repository tag. */
  repositoryTag?: string;
  /** `f:` broken flags (`f` files, `s` script, `x` xattr, `S` sha256-160). */
  broken?: string;
  dirs: InstalledDir[];
}

const INDEX_LETTERS = new Set('CPVASITULomtckDpi');

/**
 * Reads `lib/apk/db/installed` with apk 2.14's rules (database.c, apk_db_fdb_read): an empty line
 * ends a block; each line is `X:value`; `F:` needs a package name before it, `M:` a directory,
 * `R:` a directory, `a:`/`Z:` a file; any letter apk does not know makes it refuse the database
 * ("This apk-tools is too old"). Throws ApkFormatError naming the line where apk would stop.
 */
export function parseInstalledDb(text: string): InstalledDbEntry[] {
  const entries: InstalledDbEntry[] = [];
  let current: InstalledDbEntry | undefined;
  let dir: InstalledDir | undefined;
  let file: InstalledDir['files'][number] | undefined;
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((line, i) => {
    const fail = (why: string): never => {
      throw new ApkFormatError(`lib/apk/db/installed line ${i + 1} (${JSON.stringify(line)}): ${why}`);
    };
    if (line.length < 2) {
      if (current) entries.push(current);
      current = dir = file = undefined;
      return;
    }
    if (line[1] !== ':') fail('not a field');
    const letter = line[0]!;
    const value = line.slice(2);
    current ??= { fields: new Map(), replaces: [], dirs: [] };
    if (INDEX_LETTERS.has(letter)) {
      current.fields.set(letter, value);
      return;
    }
    switch (letter) {
      case 'F':
        if (!current.fields.has('P')) fail('F: before the package name');
        dir = { name: value, files: [] };
        file = undefined;
        current.dirs.push(dir);
        break;
      case 'M':
        if (!dir) fail('M: outside a directory');
        dir!.acl = value;
        break;
      case 'R':
        if (!dir) fail('R: outside a directory');
        file = { name: value };
        dir!.files.push(file);
        break;
      case 'a':
        if (!file) fail('a: outside a file');
        file!.acl = value;
        break;
      case 'Z':
        if (!file) fail('Z: outside a file');
        file!.checksum = value;
        break;
      case 'r':
        current.replaces = value.split(' ').filter((token) => token !== '');
        break;
      case 'q':
        if (!/^\d+$/.test(value)) fail('q: is not a number');
        current.replacesPriority = Number(value);
        break;
      case 's':
        current.repositoryTag = value;
        break;
      case 'f':
        if (!/^[fsxS]*$/.test(value)) fail('unknown broken flag');
        current.broken = value;
        break;
      default:
        fail(`unknown field ${letter}: (apk refuses the database: "This apk-tools is too old")`);
    }
  });
  // apk adds a package when its block ends: one without the empty line after it is silently lost.
  if (current) throw new ApkFormatError(`lib/apk/db/installed ends inside a block (${current.fields.get('P') ?? '?'}): apk would ignore that package`);
  return entries;
}
