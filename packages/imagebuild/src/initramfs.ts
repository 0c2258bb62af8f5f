/**
 * The initramfs: a static busybox, our `/init`, and the kernel modules needed to reach the boot
 * media (CD, USB, SATA, NVMe, virtio; ISO 9660 or a disk slot's ext4) with their dependencies and
 * a matching `modules.dep`, plus softdog for trial boots of a slot (loaded only then).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync, zstdDecompressSync } from 'node:zlib';
import { elfInterpreter, elfSection, ToolFailedError } from '@psyops/core';
import { type CpioEntry, writeGzipped, newcArchive } from './cpio.js';
import { ImageConfigError } from './errors.js';
import { initScript, type InitScriptOptions } from './init-script.js';
import type { BootFiles } from './rootfs.js';
import { runStage, type StageCache, type StageResult } from './stage.js';
import { requireTools } from './tools.js';

/** What /init loads before it looks for the media; names the kernel has built in or lacks are skipped. */
const EARLY_BOOT_MODULES = [
  'ata_piix',
  'ahci',
  'sr_mod',
  'cdrom',
  'isofs',
  'loop',
  'squashfs',
  'overlay',
  'virtio_pci',
  'virtio_blk',
  'virtio_scsi',
  'virtio_net',
  'usb_storage',
  'uas',
  'xhci_pci',
  'ehci_pci',
  'ohci_pci',
  'sd_mod',
  'nvme',
  // NVMe behind Intel's Volume Management Device (many recent laptops and small PCs).
  'vmd',
  // A disk slot is ext4; mkfs.ext4 enables metadata_csum, whose crc32c ext4 asks the crypto API
  // for at mount time (not a module dependency): without one loaded the mount fails. The generic
  // one: crc32c_intel fails (loudly) where the CPU lacks SSE4.2, as under TCG.
  'crc32c_generic',
  'ext4',
  'af_packet',
] as const;

/** In the initramfs (with their dependencies) but not loaded early: /init loads softdog only for a trial boot. */
const ON_DEMAND_MODULES = ['softdog'] as const;

export interface InitramfsOptions {
  kernelVersion: string;
  /** The directory holding `<kernelVersion>/` (a tree's `lib/modules`). */
  modulesDir: string;
  /** A statically linked busybox. */
  busybox: string;
  volumeId: string;
  release: string;
  kernelFlavor: string;
  out: string;
  /** Seconds since the epoch, for every entry. */
  mtime: number;
  /** Default EARLY_BOOT_MODULES. */
  modules?: readonly string[];
  /** Modules carried but not loaded early (absent ones are skipped). Default ON_DEMAND_MODULES (softdog). */
  onDemandModules?: readonly string[];
  mediaWaitSeconds?: InitScriptOptions['mediaWaitSeconds'];
  firstBootScriptTimeoutSeconds?: InitScriptOptions['firstBootScriptTimeoutSeconds'];
  /** Once aborted, nothing is written (see writeGzipped). */
  signal?: AbortSignal | undefined;
}

export interface InitramfsResult {
  /** The requested modules present as loadable modules, in load order. */
  earlyModules: string[];
  /** Every module file in the initramfs (relative to `lib/modules/<kver>`, dependencies and on-demand modules included). */
  moduleFiles: string[];
}

const MODULE_SUFFIX = /\.ko(\.gz|\.xz|\.zst)?$/;

/** `kernel/drivers/usb/storage/usb-storage.ko.gz` → `usb_storage`. */
function moduleName(path: string): string {
  return (path.split('/').pop() ?? path).replace(MODULE_SUFFIX, '').replace(/-/g, '_');
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** The `.modinfo` section of a module: NUL-separated `key=value` strings. */
function modinfo(module: Buffer, path: string): Map<string, string> {
  const info = new Map<string, string>();
  for (const field of (elfSection(module, '.modinfo', `kernel module ${path}`) ?? Buffer.alloc(0)).toString('utf8').split('\0')) {
    const equals = field.indexOf('=');
    if (equals > 0 && !info.has(field.slice(0, equals))) info.set(field.slice(0, equals), field.slice(equals + 1));
  }
  return info;
}

/** Module files under `dir`, relative, by module name. */
async function moduleFilesByName(dir: string, prefix = '', found = new Map<string, string>()): Promise<Map<string, string>> {
  for (const entry of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) await moduleFilesByName(dir, path, found);
    else if (MODULE_SUFFIX.test(entry.name) && !found.has(moduleName(path))) found.set(moduleName(path), path);
  }
  return found;
}

/**
 * The modules.dep lines of the requested modules and their dependencies. Without a modules.dep
 * (a package's files only) they come from each module's `depends=` field: Debian's depmod cannot
 * read gzip'ed modules (kmod is built without zlib there), and this reads only the modules needed.
 */
async function loadModulesDep(modulesDir: string, kernelVersion: string, requested: readonly string[]): Promise<Map<string, string[]>> {
  const kernelModules = join(modulesDir, kernelVersion);
  if (!(await exists(kernelModules))) throw new ImageConfigError(`no modules for kernel ${kernelVersion} in ${modulesDir}`);
  const depFile = join(kernelModules, 'modules.dep');
  if (await exists(depFile)) return parseModulesDep(await readFile(depFile, 'utf8'));
  const byName = await moduleFilesByName(kernelModules);
  const deps = new Map<string, string[]>();
  const pending = requested.map((name) => byName.get(name.replace(/-/g, '_'))).filter((path) => path !== undefined);
  for (let path = pending.pop(); path !== undefined; path = pending.pop()) {
    if (deps.has(path)) continue;
    const depends = modinfo(await moduleBytes(join(kernelModules, path)), path).get('depends') ?? '';
    const paths = depends
      .split(',')
      .filter(Boolean)
      .map((name) => {
        const dep = byName.get(name.replace(/-/g, '_'));
        if (dep === undefined) throw new ImageConfigError(`kernel module ${path} needs ${name}, which is not in ${kernelModules}`);
        return dep;
      });
    deps.set(path, paths);
    pending.push(...paths);
  }
  return deps;
}

function parseModulesDep(text: string): Map<string, string[]> {
  const deps = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    deps.set(
      line.slice(0, colon).trim(),
      line
        .slice(colon + 1)
        .trim()
        .split(/\s+/)
        .filter(Boolean),
    );
  }
  return deps;
}

function closureOf(deps: Map<string, string[]>, requested: readonly string[], onDemand: readonly string[] = []): InitramfsResult {
  const byName = new Map([...deps.keys()].map((path) => [moduleName(path), path]));
  const closure = new Set<string>();
  const add = (path: string): void => {
    if (closure.has(path)) return;
    closure.add(path);
    for (const dep of deps.get(path) ?? []) add(dep);
  };
  // Built-in or absent modules are skipped silently: kernel configurations differ.
  const present = (names: readonly string[]): string[] => {
    const found: string[] = [];
    for (const name of names) {
      const path = byName.get(name.replace(/-/g, '_'));
      if (path === undefined) continue;
      found.push(moduleName(path));
      add(path);
    }
    return found;
  };
  const earlyModules = present(requested);
  present(onDemand);
  return { earlyModules, moduleFiles: [...closure].sort() };
}

/** The requested modules that are loadable, and every module file they need, from modules.dep. */
export async function resolveEarlyModules(
  modulesDir: string,
  kernelVersion: string,
  requested: readonly string[] = EARLY_BOOT_MODULES,
  onDemand: readonly string[] = ON_DEMAND_MODULES,
): Promise<InitramfsResult> {
  return closureOf(await loadModulesDep(modulesDir, kernelVersion, [...requested, ...onDemand]), requested, onDemand);
}

/** `xz -dc <path>`: Node has no xz decoder (Alpine's kernels ship `.ko.xz` modules). */
async function xzDecompress(path: string): Promise<Buffer> {
  const { xz } = await requireTools(['xz']);
  return new Promise((resolve, reject) => {
    execFile(xz, ['-dc', '--', path], { encoding: 'buffer', maxBuffer: 1 << 30, timeout: 120_000 }, (error, stdout, stderr) => {
      if (error) reject(new ToolFailedError(`xz failed to decompress kernel module ${path}: ${stderr.toString().trim() || error.message}`, { cause: error }));
      else resolve(stdout);
    });
  });
}

/**
 * Module bytes, decompressed: busybox modprobe loads plain `.ko` files, and a kernel without
 * CONFIG_MODULE_DECOMPRESS cannot load compressed ones. Alpine ships `.ko.gz` (older releases),
 * `.ko.xz` or `.ko.zst`; a module that does not decompress is refused naming it.
 */
async function moduleBytes(path: string): Promise<Buffer> {
  if (path.endsWith('.ko')) return readFile(path);
  try {
    if (path.endsWith('.ko.gz')) return gunzipSync(await readFile(path));
    if (path.endsWith('.ko.zst')) return zstdDecompressSync(await readFile(path));
  } catch (error) {
    throw new ImageConfigError(`cannot decompress kernel module ${path}: ${(error as Error).message}`, { cause: error });
  }
  if (path.endsWith('.ko.xz')) return xzDecompress(path);
  throw new ImageConfigError(`cannot decompress kernel module ${path}: only .ko, .ko.gz, .ko.xz and .ko.zst are supported`);
}

/** The name a module gets in the initramfs: decompressed, so `.ko`. */
const plainName = (path: string): string => path.replace(MODULE_SUFFIX, '.ko');

/** Refuses a dynamically linked program (it would fail at boot as "no working init found"). */
function assertStaticElf(data: Buffer, path: string): void {
  if (elfInterpreter(data, path) !== undefined) throw new ImageConfigError(`${path} is dynamically linked: the initramfs needs a static busybox`);
}

function parentDirs(path: string): string[] {
  const parts = path.split('/');
  return parts.slice(0, -1).map((_, index) => parts.slice(0, index + 1).join('/'));
}

/** Builds the gzip'ed newc initramfs at `out`. */
export async function buildInitramfs(options: InitramfsOptions): Promise<InitramfsResult> {
  const requested = options.modules ?? EARLY_BOOT_MODULES;
  const onDemand = options.onDemandModules ?? ON_DEMAND_MODULES;
  const deps = await loadModulesDep(options.modulesDir, options.kernelVersion, [...requested, ...onDemand]);
  const resolved = closureOf(deps, requested, onDemand);
  const busybox = await readFile(options.busybox);
  assertStaticElf(busybox, options.busybox);
  const kernelModules = join(options.modulesDir, options.kernelVersion);
  const moduleRoot = `lib/modules/${options.kernelVersion}`;

  const files: CpioEntry[] = [
    { path: 'bin/busybox', type: 'file', mode: 0o755, data: busybox },
    { path: 'bin/sh', type: 'symlink', target: 'busybox' },
    {
      path: 'init',
      type: 'file',
      mode: 0o755,
      data: Buffer.from(
        initScript({
          volumeId: options.volumeId,
          release: options.release,
          kernelVersion: options.kernelVersion,
          kernelFlavor: options.kernelFlavor,
          earlyModules: resolved.earlyModules,
          mediaWaitSeconds: options.mediaWaitSeconds,
          firstBootScriptTimeoutSeconds: options.firstBootScriptTimeoutSeconds,
        }),
      ),
    },
  ];
  const depLines: string[] = [];
  for (const path of resolved.moduleFiles) {
    files.push({ path: `${moduleRoot}/${plainName(path)}`, type: 'file', mode: 0o644, data: await moduleBytes(join(kernelModules, path)) });
    depLines.push(`${plainName(path)}: ${(deps.get(path) ?? []).map(plainName).join(' ')}`.trimEnd());
  }
  files.push({ path: `${moduleRoot}/modules.dep`, type: 'file', mode: 0o644, data: Buffer.from(depLines.map((line) => `${line}\n`).join('')) });

  const dirs = new Set(['dev', 'proc', 'sys', 'tmp', 'media', 'media/boot', 'ram', 'sysroot']);
  for (const entry of files) for (const dir of parentDirs(entry.path)) dirs.add(dir);
  const entries: CpioEntry[] = [...[...dirs].map((path): CpioEntry => ({ path, type: 'dir', mode: 0o755 })), ...files];
  await writeGzipped(options.out, newcArchive(entries, options.mtime), options.signal);
  return resolved;
}

/**
 * What the initramfs is made by besides its inputs: the module lists and the text of /init (with
 * placeholders), so a changed list or script is a new stage even where the code hash does not see
 * it (the stage code hash covers the bundle, not each source module).
 */
function initramfsRecipe(): { modules: readonly string[]; onDemandModules: readonly string[]; init: string } {
  const template = initScript({ volumeId: 'V', release: 'R', kernelVersion: 'K', kernelFlavor: 'F', earlyModules: ['M'] });
  return { modules: EARLY_BOOT_MODULES, onDemandModules: ON_DEMAND_MODULES, init: createHash('sha256').update(template).digest('hex') };
}

/** The initramfs stage: `<stage>/initramfs`, from the boot files' kernel modules and static busybox. */
export function initramfsStage(
  cache: StageCache,
  options: { boot: BootFiles; volumeId: string; release: string; kernelFlavor: string; mtime: number },
): Promise<StageResult<string>> {
  const { boot, ...settings } = options;
  return runStage(cache, 'initramfs', { ...options, recipe: initramfsRecipe() }, async (dir) => {
    const out = join(dir, 'initramfs');
    await buildInitramfs({ ...settings, ...boot.kernel, busybox: boot.busybox, out, signal: cache.signal });
    return out;
  });
}
