/** Safe extraction of a package's data stream into a directory, with apk's rules for files another package owns. */
import { lstat, mkdir, chmod, symlink, writeFile, utimes, lutimes, link, unlink, rm } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { parseDependency, versionSatisfies } from './dependency.js';
import { FileConflictError, UnsafeEntryError } from './errors.js';
import type { ApkPackage } from './read.js';

/** A package as apk's overwrite rules see it, recorded as the owner of each file it installed. */
export interface FileOwner {
  name: string;
  version: string;
  /** `C:` identity (`Q1…`). */
  identity: string;
  origin?: string;
  /** `.PKGINFO` `replaces` tokens (dependency syntax). */
  replaces: readonly string[];
  /** `.PKGINFO` `replaces_priority` (apk's default: 0). */
  replacesPriority: number;
}

export function fileOwnerOf(pkg: ApkPackage): FileOwner {
  const { info } = pkg;
  const owner: FileOwner = {
    name: info.pkgname,
    version: info.pkgver,
    identity: pkg.identity,
    replaces: info.replaces,
    replacesPriority: info.replaces_priority ?? 0,
  };
  if (info.origin) owner.origin = info.origin;
  return owner;
}

/** apk_dep_is_materialized: the token names this very package (a provided name does not count), in its version range if it has one. */
function replacesPackage(token: string, pkg: FileOwner): boolean {
  const dep = parseDependency(token);
  if (dep.name !== pkg.name) return dep.conflict;
  return versionSatisfies(dep, pkg.version, pkg.identity) !== dep.conflict;
}

/**
 * What apk 2.14 does when `incoming` carries a file that `owner` installed
 * (database.c, apk_db_install_file): the same name (an upgrade) or the same origin (subpackages of one
 * APKBUILD) overwrite it silently; otherwise each side's `replaces_priority` counts when its `replaces`
 * names the other (-1 when it does not): the owner keeps the file when its priority is higher, the
 * incoming package overwrites it when its own is 0 or more, and anything else is a conflict.
 */
export function overwriteRule(owner: FileOwner, incoming: FileOwner): 'overwrite' | 'keep' | 'conflict' {
  if (owner.name === incoming.name) return 'overwrite';
  if (incoming.origin && owner.origin === incoming.origin) return 'overwrite';
  const ownerPriority = owner.replaces.some((token) => replacesPackage(token, incoming)) ? owner.replacesPriority : -1;
  const incomingPriority = incoming.replaces.some((token) => replacesPackage(token, owner)) ? incoming.replacesPriority : -1;
  if (ownerPriority > incomingPriority) return 'keep';
  if (incomingPriority >= 0) return 'overwrite';
  return 'conflict';
}

export interface ExtractOptions {
  /**
   * Device nodes and FIFOs are refused unless allowed; when allowed they are skipped (Node cannot
   * create them) and listed in the result so the caller can create them (e.g. with mknod).
   */
  allowDevices?: boolean;
  /** Timestamp given to every extracted entry (default: the entry's own mtime). */
  mtime?: number;
  /**
   * Files (not directories) already installed in `dir` by path, with their packages. With it, a
   * file another package owns is handled as apk does (see overwriteRule): overwritten, left to its
   * owner (listed in `kept`, not written), or refused with FileConflictError before anything of
   * this package is written. The files this package installs are recorded in it.
   */
  owners?: Map<string, FileOwner>;
}

export interface ExtractResult {
  files: number;
  directories: number;
  symlinks: number;
  skippedDevices: { path: string; type: string; mode: number }[];
  /** Files not written because the package that owns them replaces this one with a higher priority. */
  kept: string[];
}

// eslint-disable-next-line no-control-regex
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
const CONTROL = /[\x00-\x1f\x7f]/;

function checkPath(path: string): void {
  if (path === '' || path.startsWith('/') || CONTROL.test(path) || path.split('/').some((p) => p === '..' || p === '')) {
    throw new UnsafeEntryError(`refusing archive entry ${JSON.stringify(path)}: absolute, with "..", empty components or control characters`);
  }
}

/** A link target must stay inside the root, with absolute targets read relative to the root (chroot view). */
function checkLinkTarget(path: string, target: string): void {
  if (target === '' || CONTROL.test(target)) throw new UnsafeEntryError(`refusing symlink ${path}: empty or control characters in target`);
  const resolved = target.startsWith('/') ? posix.normalize(target) : posix.normalize(posix.join('/', posix.dirname(path), target));
  // Relative targets that climb above the root escape it (for absolute ones the root is "/").
  if (!target.startsWith('/')) {
    let depth = posix.dirname(path) === '.' ? 0 : posix.dirname(path).split('/').length;
    for (const part of target.split('/')) {
      if (part === '..') depth--;
      else if (part !== '.' && part !== '') depth++;
      if (depth < 0) throw new UnsafeEntryError(`refusing symlink ${path} -> ${target}: it points outside the target directory`);
    }
  }
  if (!resolved.startsWith('/')) throw new UnsafeEntryError(`refusing symlink ${path} -> ${target}`);
}

/**
 * No component between root and the entry may be a symlink on disk: writes never follow links.
 * `realDirs` remembers parents already found to be real directories during this extraction
 * (extraction replaces only files and symlinks, never a directory), so deep trees such as kernel
 * modules cost one lstat per directory instead of one per file and level.
 */
async function checkNoSymlinkParents(root: string, path: string, realDirs: Set<string>): Promise<void> {
  const parts = path.split('/');
  let current = root;
  for (const part of parts.slice(0, -1)) {
    current = join(current, part);
    if (realDirs.has(current)) continue;
    const stat = await lstat(current).catch(() => undefined);
    if (stat?.isSymbolicLink()) throw new UnsafeEntryError(`refusing ${path}: ${current} is a symlink, writing through it could leave the target directory`);
    if (stat && !stat.isDirectory()) throw new UnsafeEntryError(`refusing ${path}: ${current} is not a directory`);
    if (stat) realDirs.add(current);
  }
}

/** The entries their installed owner keeps; throws on the first conflict, naming both packages, the path and how many more there are. */
function keptFiles(entries: readonly { path: string; type: string }[], owners: ReadonlyMap<string, FileOwner>, self: FileOwner): Set<string> {
  const kept = new Set<string>();
  const conflicts: { path: string; owner: FileOwner }[] = [];
  for (const entry of entries) {
    if (entry.type === 'dir') continue; // directories are shared, never owned by one package
    const owner = owners.get(entry.path);
    if (!owner || owner.identity === self.identity) continue;
    const rule = overwriteRule(owner, self);
    if (rule === 'keep') kept.add(entry.path);
    else if (rule === 'conflict') conflicts.push({ path: entry.path, owner });
  }
  const first = conflicts[0];
  if (first) {
    const more = conflicts.length > 1 ? ` (and ${conflicts.length - 1} more files)` : '';
    throw new FileConflictError(
      `${self.name}-${self.version} would overwrite ${first.path} owned by ${first.owner.name}-${first.owner.version}${more}: neither package replaces the other`,
    );
  }
  return kept;
}

/**
 * Extracts the package's files into `dir` keeping modes and symlinks. Every entry is checked
 * before anything is written: absolute paths, `..`, escaping symlinks and (unless allowed)
 * device nodes are refused with UnsafeEntryError. Entries starting with `.` at the top level and
 * `.keep_*` files are skipped, as apk does. With `owners`, files of other packages follow apk's
 * overwrite rules (see ExtractOptions.owners).
 */
export async function extractPackage(pkg: ApkPackage, dir: string, options: ExtractOptions = {}): Promise<ExtractResult> {
  const result: ExtractResult = { files: 0, directories: 0, symlinks: 0, skippedDevices: [], kept: [] };
  for (const entry of pkg.dataEntries) checkPath(entry.path);
  const entries = pkg.dataEntries.filter((e) => !e.path.startsWith('.') && !posix.basename(e.path).startsWith('.keep_'));
  for (const entry of entries) {
    if (entry.type === 'symlink') checkLinkTarget(entry.path, entry.linkname);
    if (entry.type === 'hardlink') checkPath(entry.linkname);
    if ((entry.type === 'char' || entry.type === 'block' || entry.type === 'fifo') && !options.allowDevices) {
      throw new UnsafeEntryError(`refusing device node ${entry.path} (${entry.type}); allow devices to skip it instead`);
    }
    if (entry.type === 'other') throw new UnsafeEntryError(`refusing ${entry.path}: unsupported tar entry type "${entry.typeflag}"`);
  }
  const self = options.owners ? fileOwnerOf(pkg) : undefined;
  const kept = options.owners && self ? keptFiles(entries, options.owners, self) : new Set<string>();
  await mkdir(dir, { recursive: true });
  const directories: { path: string; mode: number; mtime: number }[] = [];
  const realDirs = new Set<string>();
  for (const entry of entries) {
    if (kept.has(entry.path)) {
      result.kept.push(entry.path);
      continue;
    }
    const target = join(dir, entry.path);
    await checkNoSymlinkParents(dir, entry.path, realDirs);
    const mtime = options.mtime ?? entry.mtime;
    switch (entry.type) {
      case 'dir': {
        const stat = await lstat(target).catch(() => undefined);
        if (stat && !stat.isDirectory()) throw new UnsafeEntryError(`refusing directory ${entry.path}: something else exists there`);
        await mkdir(target, { recursive: true });
        directories.push({ path: target, mode: entry.mode & 0o7777, mtime });
        result.directories++;
        break;
      }
      case 'file': {
        if (!realDirs.has(dirname(target))) await mkdir(dirname(target), { recursive: true });
        const stat = await lstat(target).catch(() => undefined);
        if (stat?.isDirectory()) throw new UnsafeEntryError(`refusing file ${entry.path}: a directory exists there`);
        if (stat) await unlink(target); // replace, never write through an existing symlink
        await writeFile(target, entry.data, { mode: 0o600, flag: 'wx' });
        await chmod(target, entry.mode & 0o7777);
        await utimes(target, mtime, mtime);
        result.files++;
        break;
      }
      case 'symlink': {
        await mkdir(dirname(target), { recursive: true });
        await rm(target, { force: true });
        await symlink(entry.linkname, target);
        await lutimes(target, mtime, mtime).catch(() => undefined);
        result.symlinks++;
        break;
      }
      case 'hardlink': {
        await checkNoSymlinkParents(dir, entry.linkname, realDirs);
        await rm(target, { force: true });
        await link(join(dir, entry.linkname), target);
        result.files++;
        break;
      }
      default:
        result.skippedDevices.push({ path: entry.path, type: entry.type, mode: entry.mode });
    }
  }
  // Directory modes last (a read-only directory would block its own contents).
  for (const d of directories.reverse()) {
    await chmod(d.path, d.mode);
    await utimes(d.path, d.mtime, d.mtime);
  }
  // Ownership changes only once every file is in place, as apk's database does after extraction.
  if (self && options.owners) for (const entry of entries) if (entry.type !== 'dir' && !kept.has(entry.path)) options.owners.set(entry.path, self);
  return result;
}
