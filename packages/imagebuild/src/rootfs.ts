/**
 * The root tree of the image, assembled from packages without root and without running their
 * scripts (the chainguard apko model): files extracted in install order under apk's overwrite
 * rules, apk's database written as `apk add --root` would leave it, busybox applet links made,
 * install scripts and triggers kept for the first boot, and a root without /sbin/init refused.
 */
import { createHash } from 'node:crypto';
import { chmod, lstat, lutimes, mkdir, readdir, readFile, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';
import { ApkChecksumError, extractPackage, isUrl, readPackage, type ApkFileEntry, type ApkPackage, type ExtractOptions } from '@psyops/apkpkg';
import {
  formatInstalledDb,
  formatScriptsTar,
  formatTriggers,
  formatWorld,
  ownerOf,
  parseIdFile,
  type InstalledPackage,
  type OwnerIds,
} from '@psyops/apkpkg/format';
import { elfInterpreter, fileAccessError, isElf, PsyopsError } from '@psyops/core';
import { ImageConfigError } from './errors.js';
import { FIRSTBOOT_DIR, firstBootPlan } from './firstboot.js';
import type { FetchedPackage } from './packages.js';
import { runStage, type StageCache, type StageResult } from './stage.js';

/** An entry the image must keep with an owner other than 0:0 or a setuid/setgid mode (the tree on disk belongs to the builder). */
export interface SpecialEntry {
  /** Relative to the tree (`usr/bin/su`). */
  path: string;
  uid: number;
  gid: number;
  mode: number;
}

/** A device node or FIFO from a package: not created on disk (that needs root), listed for the image writer. */
export interface DeviceEntry {
  path: string;
  type: 'char' | 'block' | 'fifo';
  mode: number;
  major?: number;
  minor?: number;
}

export interface ExtractedTree {
  dir: string;
  specialEntries: SpecialEntry[];
  devices: DeviceEntry[];
}

export interface RootTree extends ExtractedTree {
  /** Scripts written to lib/psyops/firstboot/ for the first boot to run. */
  firstBootScripts: number;
}

/** The assembled root has no usable /sbin/init: the kernel's switch to it would fail at boot. */
export class RootWithoutInitError extends PsyopsError {
  override readonly code = 'ROOT_WITHOUT_INIT';
}

export interface AssembleRootTreeOptions {
  /** Install order (dependencies first), as resolve returns it. */
  packages: readonly FetchedPackage[];
  /** etc/apk/world lines. */
  world: readonly string[];
  /**
   * etc/apk/repositories lines: what the node reaches (http(s) URLs, optionally `@tag `-prefixed),
   * never a directory of the build host (see nodeRepositories).
   */
  repositories: readonly string[];
  /** Their `*.pub` files become etc/apk/keys/. */
  keysDirs: readonly string[];
  arch: string;
  /** Must not exist; created. */
  outDir: string;
  /** Timestamp (seconds) of every entry in the tree. */
  mtime: number;
}

export { FIRSTBOOT_DIR };
const MAX_SYMLINK_HOPS = 40;

/** Where siteapi publishes the site's APK repository (`<site>/apk/psyopsOS/<arch>/APKINDEX.tar.gz`). */
const SITE_APK_REPOSITORY = 'apk/psyopsOS';

/**
 * The image's etc/apk/repositories: the build's http(s) repositories (Alpine's mirror, …) in
 * their order, then the site's own repository; the build's local directories are left out, the
 * node cannot reach them. A tagged repository is given (and written) as apk writes it, `@tag URL`.
 */
export function nodeRepositories(buildRepositories: readonly string[], siteUrl?: string): string[] {
  const lines = buildRepositories.filter((line) => isUrl(line.replace(/^@\S+\s+/, '')));
  if (siteUrl) lines.push(`${siteUrl.replace(/\/+$/, '')}/${SITE_APK_REPOSITORY}`);
  return [...new Set(lines)];
}

/** Refuses a repositories line the node could not use: a path would be one of the build host. */
function checkRepositoryLines(lines: readonly string[]): void {
  for (const line of lines) {
    const url = line.replace(/^@\S+\s+/, '');
    if (!/^https?:\/\/\S+$/.test(url)) {
      throw new ImageConfigError(
        `etc/apk/repositories line "${line}" is not an http(s) URL: the image lists only repositories the node can reach, never a directory of the build host`,
      );
    }
  }
}

/**
 * The host path of `path` (relative, chroot view) inside `root`, following symlinks of its parent
 * components the way the image will (absolute targets are read relative to `root`), so nothing is
 * ever written through a link to the build host. The last component is not followed.
 */
async function resolveInRoot(root: string, path: string): Promise<string> {
  const pending = path.split('/').filter((p) => p !== '' && p !== '.');
  const resolved: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    if (pending.length > 0) {
      const here = join(root, ...resolved, part);
      const info = await lstat(here).catch(() => undefined);
      if (info?.isSymbolicLink()) {
        if (++hops > MAX_SYMLINK_HOPS) throw new ImageConfigError(`too many levels of symbolic links under ${root} resolving ${path}`);
        const target = await readlink(here);
        if (target.startsWith('/')) resolved.length = 0;
        pending.unshift(...target.split('/').filter((p) => p !== '' && p !== '.'));
        continue;
      }
    }
    resolved.push(part);
  }
  return join(root, ...resolved);
}

/** Creates the missing directories of `dir` (a host path inside the tree) with mode 0755, whatever the umask. */
async function makeDirs(dir: string): Promise<void> {
  const info = await lstat(dir).catch(() => undefined);
  if (info) return;
  await makeDirs(dirname(dir));
  await mkdir(dir);
  await chmod(dir, 0o755);
}

async function isDirectory(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => undefined))?.isDirectory() ?? false;
}

/** Writes a file into the tree (path in chroot view) with an exact mode. */
async function writeTreeFile(root: string, path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const target = await resolveInRoot(root, path);
  await makeDirs(dirname(target));
  await rm(target, { force: true });
  await writeFile(target, data, { mode, flag: 'wx' });
  await chmod(target, mode);
}

async function readFetchedPackage(fetched: FetchedPackage): Promise<ApkPackage> {
  let bytes: Buffer;
  try {
    bytes = await readFile(fetched.path);
  } catch (error) {
    throw fileAccessError(error, fetched.path, `package ${fetched.entry.name}`);
  }
  const pkg = readPackage(bytes, { name: fetched.path });
  if (pkg.identity !== fetched.entry.identity) {
    throw new ApkChecksumError(`${fetched.path}: holds ${pkg.identity}, not ${fetched.entry.name}-${fetched.entry.version} (${fetched.entry.identity})`);
  }
  return pkg;
}

async function createOutDir(outDir: string): Promise<void> {
  await mkdir(dirname(outDir), { recursive: true });
  try {
    await mkdir(outDir);
  } catch (error) {
    throw fileAccessError(error, outDir, 'output directory');
  }
  await chmod(outDir, 0o755);
}

/** Removes a half-built tree, even where a package made a directory read-only. */
async function removeTree(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true });
  } catch {
    const unlock = async (path: string): Promise<void> => {
      const info = await lstat(path).catch(() => undefined);
      if (!info?.isDirectory()) return;
      await chmod(path, 0o700).catch(() => undefined);
      for (const name of await readdir(path).catch(() => [] as string[])) await unlock(join(path, name));
    };
    await unlock(dir);
    await rm(dir, { recursive: true, force: true });
  }
}

/** Builds into `outDir`; on failure nothing is left behind. */
async function building<T>(outDir: string, build: () => Promise<T>): Promise<T> {
  await createOutDir(outDir);
  try {
    return await build();
  } catch (error) {
    await removeTree(outDir);
    throw error;
  }
}

/** Every entry of the tree gets `mtime` (directories changed when later entries were added). */
async function setTreeTimes(dir: string, mtime: number): Promise<void> {
  for (const name of (await readdir(dir)).sort()) {
    const path = join(dir, name);
    const info = await lstat(path);
    if (info.isSymbolicLink()) await lutimes(path, mtime, mtime);
    else {
      if (info.isDirectory()) await setTreeTimes(path, mtime);
      await utimes(path, mtime, mtime);
    }
  }
  await utimes(dir, mtime, mtime);
}

const DEVICE_TYPES = new Set(['char', 'block', 'fifo']);

/** A regular file of the tree as text, or '' when it is missing (or not a regular file). */
async function readTreeText(root: string, path: string): Promise<string> {
  const target = await resolveInRoot(root, path);
  if (!(await lstat(target).catch(() => undefined))?.isFile()) return '';
  return readFile(target, 'utf8');
}

/**
 * Owner names resolved through the tree's etc/passwd and etc/group, as apk does. Users that
 * packages create in their install scripts do not exist yet (those scripts run at first boot),
 * so their files keep the numbers in the package.
 */
async function treeOwnerIds(root: string): Promise<OwnerIds> {
  return { users: parseIdFile(await readTreeText(root, 'etc/passwd')), groups: parseIdFile(await readTreeText(root, 'etc/group')) };
}

/**
 * Extracts packages in order and tracks who owns what, as apk does: a file another package owns
 * is overwritten or kept only as `replaces` allows, anything else fails the build
 * (FileConflictError, naming both packages and the path).
 */
async function extractPackages(
  packages: readonly FetchedPackage[],
  outDir: string,
  mtime: number,
): Promise<{ installed: InstalledPackage[]; ids: OwnerIds; tree: ExtractedTree }> {
  const installed: InstalledPackage[] = [];
  const lastWriter = new Map<string, ApkFileEntry>();
  const owners: NonNullable<ExtractOptions['owners']> = new Map();
  for (const fetched of packages) {
    const pkg = await readFetchedPackage(fetched);
    const { kept } = await extractPackage(pkg, outDir, { allowDevices: true, mtime, owners });
    const keptFiles = new Set(kept);
    // A file its earlier owner kept is neither this package's on disk nor in its database entry.
    const files = pkg.files.filter((file) => !keptFiles.has(file.path));
    for (const file of files) {
      if (file.path.startsWith('.') || posix.basename(file.path).startsWith('.keep_')) continue;
      lastWriter.set(file.path, file);
    }
    // The database needs the file list, not the contents: do not hold every package in memory.
    installed.push({ entry: fetched.entry, pkg: { ...pkg, files, dataEntries: [] } });
  }
  const ids = await treeOwnerIds(outDir);
  const specialEntries: SpecialEntry[] = [];
  const devices: DeviceEntry[] = [];
  for (const [path, file] of [...lastWriter].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const mode = file.mode & 0o7777;
    const { uid, gid } = ownerOf(file, ids);
    if (DEVICE_TYPES.has(file.type)) devices.push({ path, type: file.type as DeviceEntry['type'], mode });
    else if (file.type !== 'symlink' && (uid !== 0 || gid !== 0 || (mode & 0o6000) !== 0)) specialEntries.push({ path, uid, gid, mode });
  }
  return { installed, ids, tree: { dir: outDir, specialEntries, devices } };
}

/** Plain ordered extraction (the boot set: kernel, modules, initramfs tools), every entry at `mtime`. */
export async function extractTree(packages: readonly FetchedPackage[], outDir: string, mtime: number): Promise<ExtractedTree> {
  return building(outDir, async () => {
    const { tree } = await extractPackages(packages, outDir, mtime);
    await setTreeTimes(outDir, mtime);
    return tree;
  });
}

/**
 * Busybox applet links from `etc/busybox-paths.d/*` (one path per line, shipped by Alpine's
 * busybox, whose APKBUILD writes `busybox --list-full`: `bin/ls`, `sbin/init`, no leading `/`; a
 * leading `/` is accepted too), each a symlink to /bin/busybox unless something exists there
 * already: what busybox's post-install (`busybox --install -s`) makes at boot, made now so the
 * root has its /sbin/init. Returns false when the tree has no such list.
 */
async function linkBusyboxApplets(root: string): Promise<boolean> {
  const listDir = await resolveInRoot(root, 'etc/busybox-paths.d');
  if (!(await isDirectory(listDir))) return false;
  const lists = (await readdir(listDir)).sort();
  if (lists.length === 0) return false;
  for (const list of lists) {
    // Only regular files: a symlink here could point anywhere on the build host.
    if (!(await lstat(join(listDir, list))).isFile()) continue;
    const text = await readFile(join(listDir, list), 'utf8');
    for (const line of text.split('\n')) {
      const applet = posix.normalize(`/${line.trim()}`);
      if (applet === '/' || line.trim().startsWith('#')) continue;
      const target = await resolveInRoot(root, applet);
      if (await lstat(target).catch(() => undefined)) continue;
      await makeDirs(dirname(target));
      await symlink('/bin/busybox', target);
    }
  }
  return true;
}

/**
 * Refuses a root whose /sbin/init is missing, a link to nothing, or not executable: /init's
 * switch_root would fail on the node. Links are followed inside the root (absolute targets from
 * its top), as they will be at boot.
 */
async function checkInit(root: string): Promise<void> {
  const chain: string[] = [];
  let path = '/sbin/init';
  for (let hops = 0; hops <= MAX_SYMLINK_HOPS; hops++) {
    chain.push(path);
    const info = await lstat(await resolveInRoot(root, path)).catch(() => undefined);
    const what = chain.length === 1 ? '/sbin/init' : `/sbin/init (${chain.join(' -> ')})`;
    if (!info) {
      throw new RootWithoutInitError(
        chain.length === 1
          ? 'the root has no /sbin/init: no package installs it and no etc/busybox-paths.d list names it (on Alpine, busybox provides it)'
          : `the root's ${what} points to nothing: ${path} is missing`,
      );
    }
    if (!info.isSymbolicLink()) {
      if (info.isFile() && (info.mode & 0o111) !== 0) return;
      throw new RootWithoutInitError(`the root's ${what} is not an executable file`);
    }
    const target = await readlink(await resolveInRoot(root, path));
    path = target.startsWith('/') ? posix.normalize(target) : posix.normalize(posix.join(posix.dirname(path), target));
  }
  throw new RootWithoutInitError(`the root's /sbin/init is a loop of symbolic links (${chain.slice(0, 4).join(' -> ')} …)`);
}

async function trustedKeys(keysDirs: readonly string[]): Promise<Map<string, Buffer>> {
  const keys = new Map<string, Buffer>();
  for (const dir of keysDirs) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (error) {
      throw fileAccessError(error, dir, 'keys directory');
    }
    for (const name of names.filter((n) => n.endsWith('.pub')).sort()) {
      const data = await readFile(join(dir, name));
      const known = keys.get(name);
      if (known && !known.equals(data)) throw new ImageConfigError(`two different keys are named ${name} (in ${dir} and an earlier keys directory)`);
      keys.set(name, data);
    }
  }
  return keys;
}

/**
 * Assembles the root tree in `outDir` (created; it must not exist): packages extracted in order
 * without running scripts (a file two packages carry fails with FileConflictError unless
 * `replaces` allows it), apk's files (world, arch, repositories, keys, installed db, scripts.tar,
 * triggers, lock), busybox applet links, and install scripts and triggers under
 * lib/psyops/firstboot/ for /init to run at first boot in apk's order. A root without a usable
 * /sbin/init fails with RootWithoutInitError. Same inputs, same tree (bytes, modes, mtimes). On
 * failure `outDir` is removed.
 */
export async function assembleRootTree(options: AssembleRootTreeOptions): Promise<RootTree> {
  const { outDir, mtime } = options;
  checkRepositoryLines(options.repositories);
  return building(outDir, async () => {
    const { installed, ids, tree } = await extractPackages(options.packages, outDir, mtime);
    const keys = await trustedKeys(options.keysDirs);

    await writeTreeFile(outDir, 'etc/apk/world', formatWorld(options.world), 0o644);
    await writeTreeFile(outDir, 'etc/apk/arch', `${options.arch}\n`, 0o644);
    await writeTreeFile(outDir, 'etc/apk/repositories', options.repositories.map((r) => `${r}\n`).join(''), 0o644);
    await makeDirs(await resolveInRoot(outDir, 'etc/apk/keys'));
    for (const [name, data] of keys) await writeTreeFile(outDir, `etc/apk/keys/${name}`, data, 0o644);
    await writeTreeFile(outDir, 'lib/apk/db/installed', formatInstalledDb(installed, ids), 0o644);
    await writeTreeFile(outDir, 'lib/apk/db/scripts.tar', formatScriptsTar(installed, mtime), 0o644);
    await writeTreeFile(outDir, 'lib/apk/db/triggers', formatTriggers(installed), 0o644);
    await writeTreeFile(outDir, 'lib/apk/db/lock', '', 0o600);

    const linked = await linkBusyboxApplets(outDir);
    const hasBusybox = await lstat(await resolveInRoot(outDir, 'bin/busybox')).then(
      () => true,
      () => false,
    );
    await checkInit(outDir);
    const plan = firstBootPlan(installed, { busyboxInstall: !linked && hasBusybox });
    for (const file of plan.files) await writeTreeFile(outDir, `${FIRSTBOOT_DIR}/${file.name}`, file.data, 0o700);

    await setTreeTimes(outDir, mtime);
    return { ...tree, firstBootScripts: plan.runs.length };
  });
}

/** What the image needs from the kernel package: what the modloop and the initramfs are made from. */
export interface KernelFiles {
  /** The `lib/modules/<version>` directory name (`uname -r` of that kernel). */
  kernelVersion: string;
  /** Absolute path of `boot/vmlinuz-<flavor>`. */
  image: string;
  /** The tree's `lib/modules`, holding `<kernelVersion>/`. */
  modulesDir: string;
  firmwareDir?: string;
}

/** Finds `boot/vmlinuz-<flavor>` and the one `lib/modules/<version>` of an extracted kernel package. */
export async function findKernel(treeDir: string, flavor: string): Promise<KernelFiles> {
  const image = join(treeDir, 'boot', `vmlinuz-${flavor}`);
  if (!(await lstat(image).catch(() => undefined))?.isFile()) {
    throw new ImageConfigError(
      `no kernel image boot/vmlinuz-${flavor} in the boot packages: is linux-${flavor} the kernel package and is "${flavor}" its flavor?`,
    );
  }
  const modulesDir = join(treeDir, 'lib/modules');
  const versions = [];
  for (const name of (await readdir(modulesDir).catch(() => [] as string[])).sort()) if (await isDirectory(join(modulesDir, name))) versions.push(name);
  if (versions.length !== 1) {
    throw new ImageConfigError(
      versions.length === 0
        ? `linux-${flavor} has no lib/modules/<version> directory`
        : `the boot packages hold several kernel module trees (${versions.join(', ')}); expected one`,
    );
  }
  const kernel: KernelFiles = { kernelVersion: versions[0]!, image, modulesDir };
  const firmwareDir = join(treeDir, 'lib/firmware');
  if (await isDirectory(firmwareDir)) kernel.firmwareDir = firmwareDir;
  return kernel;
}

/** The static busybox for the initramfs: `bin/busybox.static`, else `bin/busybox` when it is a static ELF. */
export async function findStaticBusybox(treeDir: string): Promise<string> {
  const dedicated = join(treeDir, 'bin/busybox.static');
  if ((await lstat(dedicated).catch(() => undefined))?.isFile()) return dedicated;
  const plain = join(treeDir, 'bin/busybox');
  if ((await lstat(plain).catch(() => undefined))?.isFile() && isElf(plain) && elfInterpreter(plain) === undefined) return plain;
  throw new ImageConfigError(
    `the initramfs needs a static busybox: the boot packages have no bin/busybox.static and ${basename(plain)} is ${
      (await lstat(plain).catch(() => undefined)) ? 'dynamically linked' : 'missing'
    } (on Alpine add busybox-static to initramfsPackages)`,
  );
}

/** Names and content hashes of the trusted keys: the root's etc/apk/keys depends on them. */
async function keyFingerprints(keysDirs: readonly string[]): Promise<string[]> {
  const result: string[] = [];
  for (const dir of [...new Set(keysDirs)].sort()) {
    const names = (await readdir(dir).catch(() => [] as string[])).filter((name) => name.endsWith('.pub')).sort();
    for (const name of names)
      result.push(
        `${name} ${createHash('sha256')
          .update(await readFile(join(dir, name)))
          .digest('hex')}`,
      );
  }
  return result;
}

const identities = (packages: readonly FetchedPackage[]) => packages.map((item) => item.entry.identity);

/** The rootfs stage: the root tree in `<stage>/root`. */
export async function rootfsStage(cache: StageCache, options: Omit<AssembleRootTreeOptions, 'outDir'>): Promise<StageResult<RootTree>> {
  const { world, repositories, arch, mtime } = options;
  const inputs = { packages: identities(options.packages), world, repositories, keys: await keyFingerprints(options.keysDirs), arch, mtime };
  return runStage(cache, 'rootfs', inputs, (dir) => assembleRootTree({ ...options, outDir: join(dir, 'root') }));
}

/** The kernel and the static busybox the boot media are made from. */
export interface BootFiles {
  kernel: KernelFiles;
  busybox: string;
}

/** The boot-packages stage: the kernel package and the initramfs packages extracted in `<stage>/tree`. */
export function bootPackagesStage(
  cache: StageCache,
  options: { packages: readonly FetchedPackage[]; kernelFlavor: string; mtime: number },
): Promise<StageResult<BootFiles>> {
  const { kernelFlavor, mtime } = options;
  return runStage(cache, 'boot-packages', { packages: identities(options.packages), kernelFlavor, mtime }, async (dir) => {
    const tree = await extractTree(options.packages, join(dir, 'tree'), mtime);
    return { kernel: await findKernel(tree.dir, kernelFlavor), busybox: await findStaticBusybox(tree.dir) };
  });
}
