/**
 * The two squashfs images on the boot media: the modloop (kernel modules and firmware,
 * loop-mounted from the media after boot) and the root image (copied into the tmpfs root by /init).
 */
import { chmod, copyFile, link, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { produceFileAtomically, runTool } from '@psyops/core';
import { ImageConfigError } from './errors.js';
import type { DeviceEntry, KernelFiles, RootTree, SpecialEntry } from './rootfs.js';
import { runStage, type StageCache, type StageResult } from './stage.js';
import { requireTools } from './tools.js';

export type SquashfsCompression = 'xz' | 'zstd' | 'lz4' | 'gzip';

function compressionArgs(compression: SquashfsCompression): string[] {
  switch (compression) {
    case 'xz':
      return ['-comp', 'xz', '-Xbcj', 'x86'];
    case 'zstd':
      return ['-comp', 'zstd', '-Xcompression-level', '9'];
    case 'lz4':
      return ['-comp', 'lz4', '-Xhc'];
    case 'gzip':
      return ['-comp', 'gzip', '-Xcompression-level', '9'];
  }
}

async function mksquashfs(sources: string[], out: string, mtime: number, extra: string[]): Promise<void> {
  const tools = await requireTools(['mksquashfs']);
  await produceFileAtomically(out, (temp) =>
    runTool(
      tools.mksquashfs,
      [
        ...sources,
        temp,
        '-noappend',
        '-no-xattrs',
        '-quiet',
        '-no-progress',
        // Host times and the build time would make every build differ.
        '-mkfs-time',
        String(mtime),
        '-all-time',
        String(mtime),
        ...extra,
        // mksquashfs refuses SOURCE_DATE_EPOCH next to the explicit times.
      ],
      { env: { SOURCE_DATE_EPOCH: undefined } },
    ),
  );
}

async function isDirectory(path: string): Promise<boolean> {
  return lstat(path).then(
    (stats) => stats.isDirectory(),
    () => false,
  );
}

export interface ModloopOptions {
  kernelVersion: string;
  /** The directory holding `<kernelVersion>/` (a tree's `lib/modules`). */
  modulesDir: string;
  /** Firmware files (a tree's `lib/firmware`), stored as `modules/firmware/`. */
  firmwareDir?: string;
  out: string;
  /** Seconds since the epoch: every time stamp in the image. */
  mtime: number;
  /**
   * Default zstd (level 9). Debian's 396 MB module tree on two cores: zstd 94 MB in 13 s;
   * zstd level 15 89 MB in 93 s; xz with the x86 filter (Alpine's choice) 78 MB in 554 s.
   */
  compression?: SquashfsCompression;
}

/** Squashfs with `modules/<kver>/…` and `modules/firmware/…`, all owned by root. */
export async function buildModloop(options: ModloopOptions): Promise<void> {
  const kernelModules = join(options.modulesDir, options.kernelVersion);
  if (!(await isDirectory(kernelModules))) throw new ImageConfigError(`no modules for kernel ${options.kernelVersion} in ${options.modulesDir}`);
  const layout = await mkdtemp(join(dirname(options.out), '.modloop-layout-'));
  try {
    await mkdir(join(layout, 'modules'));
    await chmod(join(layout, 'modules'), 0o755);
    await mirrorTree(kernelModules, join(layout, 'modules', options.kernelVersion));
    await ensureModulesDep(layout, options.kernelVersion);
    if (options.firmwareDir !== undefined && (await isDirectory(options.firmwareDir))) {
      await mirrorTree(options.firmwareDir, join(layout, 'modules', 'firmware'));
    }
    await mksquashfs([layout], options.out, options.mtime, [...compressionArgs(options.compression ?? 'zstd'), '-all-root', '-root-mode', '755']);
  } finally {
    await rm(layout, { recursive: true, force: true });
  }
}

/** Module files below `dir`, relative to it (`.ko`, `.ko.gz`, `.ko.xz`, `.ko.zst`). */
async function moduleFiles(dir: string, prefix = ''): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) found.push(...(await moduleFiles(dir, path)));
    else if (/\.ko(\.gz|\.xz|\.zst)?$/.test(entry.name)) found.push(path);
  }
  return found;
}

/**
 * A kernel package without `modules.dep` (Alpine's ship it; a hand-made one may not) gets one made
 * by the host's depmod in the modloop layout (`depmod -b <base> <kver>` over a `lib/modules` link
 * to it), or the booted system's modprobe finds nothing. kmod's depmod reads `.ko.xz`/`.ko.zst`/
 * `.ko.gz` only when built with xz/zstd/zlib (Debian's lacks zlib): a module it could not read is
 * missing from modules.dep, which is refused naming it rather than booting without it.
 */
async function ensureModulesDep(layout: string, kernelVersion: string): Promise<void> {
  const tree = join(layout, 'modules', kernelVersion);
  if (
    await lstat(join(tree, 'modules.dep')).then(
      () => true,
      () => false,
    )
  )
    return;
  const modules = await moduleFiles(tree);
  if (modules.length === 0) return;
  const { depmod } = await requireTools(['depmod']);
  const base = await mkdtemp(join(dirname(layout), '.depmod-base-'));
  try {
    await mkdir(join(base, 'lib'));
    await symlink(join(layout, 'modules'), join(base, 'lib', 'modules'));
    await runTool(depmod, ['-b', base, kernelVersion], { timeoutMs: 300_000 });
  } finally {
    await rm(base, { recursive: true, force: true });
  }
  const listed = new Set(
    (await readFile(join(tree, 'modules.dep'), 'utf8').catch(() => ''))
      .split('\n')
      .map((line) => line.slice(0, line.indexOf(':')))
      .filter(Boolean),
  );
  const unread = modules.filter((path) => !listed.has(path));
  if (unread.length > 0)
    throw new ImageConfigError(
      `the kernel package has no modules.dep and this host's depmod could not read ${unread.length} of its modules (${unread.slice(0, 3).join(', ')}${
        unread.length > 3 ? ', …' : ''
      }): ship modules.dep in the kernel package, or use a kmod built with support for that compression (depmod --version lists +XZ +ZSTD +ZLIB)`,
    );
}

/** The modloop stage: `<stage>/modloop`. */
export function modloopStage(cache: StageCache, kernel: KernelFiles, mtime: number): Promise<StageResult<string>> {
  return runStage(cache, 'modloop', { kernel, mtime }, async (dir) => {
    const out = join(dir, 'modloop');
    await buildModloop({ ...kernel, out, mtime });
    return out;
  });
}

/**
 * Recreates `source` at `target` with hard links (a copy across file systems), so the modloop
 * layout costs no copying of the modules themselves.
 */
async function mirrorTree(source: string, target: string): Promise<void> {
  await mkdir(target, { recursive: true });
  await chmod(target, (await lstat(source)).mode & 0o7777);
  for (const entry of await readdir(source, { withFileTypes: true })) {
    const from = join(source, entry.name);
    const to = join(target, entry.name);
    if (entry.isDirectory()) await mirrorTree(from, to);
    else if (entry.isSymbolicLink()) await symlink(await readlink(from), to);
    else if (entry.isFile()) await link(from, to).catch(() => copyFile(from, to));
  }
}

export interface RootImageOptions {
  rootDir: string;
  /** Entries not owned by root, or whose mode differs from the tree's (setuid, 0700 dirs...). */
  specialEntries: readonly SpecialEntry[];
  /** Created owned by root; their directories must exist in the tree. */
  devices?: readonly DeviceEntry[];
  out: string;
  mtime: number;
  /**
   * Default lz4 (high compression): /init copies the whole image into the tmpfs, and lz4 unpacks
   * fastest. Time to fill the tmpfs under TCG from a 100 MB root (node): lz4 46 MB in 3.5 s,
   * zstd 35 MB in 6.0 s, gzip 39 MB in 6.1 s, xz 31 MB in 29 s.
   */
  compression?: SquashfsCompression;
}

function pseudoName(path: string): string {
  if (/[\n\r]/.test(path)) throw new ImageConfigError(`file name with a line break in the root tree: ${JSON.stringify(path)}`);
  return `"${path.replace(/["\\]/g, (char) => `\\${char}`)}"`;
}

/** Every path of `root`, relative, parents first. */
async function walk(root: string, prefix = ''): Promise<{ path: string; mode: number }[]> {
  const result: { path: string; mode: number }[] = [];
  const names = (await readdir(join(root, prefix))).sort();
  for (const name of names) {
    const path = prefix ? `${prefix}/${name}` : name;
    const stats = await lstat(join(root, path));
    result.push({ path, mode: stats.mode & 0o7777 });
    if (stats.isDirectory()) result.push(...(await walk(root, path)));
  }
  return result;
}

/**
 * Squashfs of `rootDir`, every entry owned by root:root with its mode from the tree, except the
 * special entries. Ownership comes from mksquashfs pseudo definitions, so no root is needed.
 */
export async function buildRootImage(options: RootImageOptions): Promise<void> {
  if (!(await isDirectory(options.rootDir))) throw new ImageConfigError(`root tree ${options.rootDir} is not a directory`);
  const entries = await walk(options.rootDir);
  const known = new Set(entries.map((entry) => entry.path));
  const special = new Map<string, SpecialEntry>();
  for (const entry of options.specialEntries) {
    const path = entry.path.replace(/^\/+/, '');
    if (!known.has(path)) throw new ImageConfigError(`special entry ${entry.path} is not in the root tree`);
    special.set(path, entry);
  }
  const lines = entries.map(({ path, mode }) => {
    const owner = special.get(path) ?? { uid: 0, gid: 0, mode };
    return `${pseudoName(path)} m ${owner.mode.toString(8)} ${owner.uid} ${owner.gid}`;
  });
  for (const device of options.devices ?? []) {
    const path = device.path.replace(/^\/+/, '');
    if (known.has(path)) throw new ImageConfigError(`device ${device.path} is also a file in the root tree`);
    const mode = (device.mode & 0o7777).toString(8);
    lines.push(
      device.type === 'fifo'
        ? `${pseudoName(path)} i ${mode} 0 0 f`
        : `${pseudoName(path)} ${device.type === 'char' ? 'c' : 'b'} ${mode} 0 0 ${device.major ?? 0} ${device.minor ?? 0}`,
    );
  }
  const work = await mkdtemp(join(dirname(options.out), '.rootimage-'));
  try {
    const pseudoFile = join(work, 'owners.pseudo');
    await writeFile(pseudoFile, `${lines.join('\n')}\n`);
    await mksquashfs([options.rootDir], options.out, options.mtime, [
      ...compressionArgs(options.compression ?? 'lz4'),
      '-pf',
      pseudoFile,
      '-root-mode',
      '755',
      '-root-uid',
      '0',
      '-root-gid',
      '0',
    ]);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The root-image stage: `<stage>/rootfs.squashfs`. */
export function rootImageStage(cache: StageCache, tree: RootTree, mtime: number): Promise<StageResult<string>> {
  return runStage(cache, 'root-image', { tree, mtime }, async (dir) => {
    const out = join(dir, 'rootfs.squashfs');
    await buildRootImage({ rootDir: tree.dir, specialEntries: tree.specialEntries, devices: tree.devices, out, mtime });
    return out;
  });
}
