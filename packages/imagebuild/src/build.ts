/**
 * build-iso: APK repositories + world + overlay → a signed, reproducible, hybrid BIOS/UEFI ISO.
 * One function per stage (in their own modules, each cached by the hash of its inputs); this one
 * calls them in order and writes the outputs only once all of them are complete. It holds the
 * cache directory and the output directory locked (lock.ts) for the whole build.
 */
import { randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, open, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { resolve as resolveWorld, type ResolvedPackage } from '@psyops/apkpkg';
import { findProgram, runTool, sha256File } from '@psyops/core';
import { formatKeyId, signFile, type SecretKey } from '@psyops/signing';
import { apkovlStage, type BuildInfo } from './apkovl.js';
import { efiStage, volumeIdFor, type EfiBoot } from './bootloader.js';
import { diskStage, placeSecretVolume, secretVolumeNodeName, type DiskPartition, type SlotManifest, type SlotSource } from './disk-image.js';
import { ImageConfigError } from './errors.js';
import { initramfsStage } from './initramfs.js';
import { CACHE_LOCK, type DirectoryLock, type LockOptions, lockDirectory, OUTPUT_LOCK } from './lock.js';
import { isoStage } from './iso.js';
import { fetchPackages, type FetchedPackage, type FetchPackagesOptions } from './packages.js';
import { loadRepositories, type LoadedRepository, type RepositorySource } from './repositories.js';
import { bootPackagesStage, type KernelFiles, nodeRepositories, rootfsStage } from './rootfs.js';
import { modloopStage, rootImageStage } from './squashfs.js';
import { removeStageLeftovers, type StageCache, type StageResult } from './stage.js';
import { type HostTool, requireHostFile, requireTools } from './tools.js';

/** What the image is: the shape of a workspace's `image` section, its paths resolved. */
export interface ImageSettings {
  /** `pc` (x86_64, BIOS + UEFI); `rpi` is declared and refused for now. */
  flavor: 'pc' | 'rpi';
  /** Release tag (default: yymmdd of the build's epoch). */
  release?: string;
  /** Packages of the root (apk world syntax). */
  world: string[];
  /** Kernel flavor: package `linux-<kernel>`. */
  kernel: string;
  /** Packages the initramfs takes its static busybox from (not installed in the root). */
  initramfsPackages: string[];
  /** Directory whose files go into the apkovl (absent directory: none). */
  overlay?: string;
  kernelCmdline: string;
  hostname: string;
  /** Receives `psyopsOS-<release>-<arch>.iso`, its `.minisig` and its `.json` manifest. */
  outDir: string;
}

export interface BuildIsoOptions {
  image: ImageSettings;
  /** Highest priority first: http(s) URLs or local directories, each with its trusted keys. */
  repositories: RepositorySource[];
  /** Package cache and stage outputs. */
  cacheDir: string;
  /** Signs the ISO. */
  secretKey: SecretKey;
  /** Base URL of the site nodes configure themselves from (written to /etc/psyopsOS/site.url). */
  siteUrl?: string;
  /** Timestamps of everything in the image; default: the newest package's build time. */
  sourceDateEpoch?: number;
  /** Use only cached indexes and packages. */
  offline?: boolean;
  /** Rebuild every stage even when cached. */
  rebuild?: boolean;
  /** Directory whose git revision and dirty flag go into /etc/psyopsOS/iso.json (e.g. the workspace). */
  gitDir?: string;
  /**
   * How long to wait while another build holds the cache or output directory (default 20
   * minutes, reported as a `lock` progress event); 0 fails at once naming the holder's PID.
   */
  lockWaitMs?: number;
  /** A `start` event as each step begins (several run side by side), `progress` within some, `done` as each ends. */
  onProgress?: (event: BuildProgress) => void;
  /**
   * Stops the build (e.g. on Ctrl-C): it rejects with the signal's reason within about a second,
   * leaving no stage temporary directory and nothing in the output directory; finished stages stay cached.
   */
  signal?: AbortSignal;
}

export type StageName =
  | 'lock'
  | 'indexes'
  | 'resolve'
  | 'fetch'
  | 'rootfs'
  | 'boot-packages'
  | 'modloop'
  | 'root-image'
  | 'initramfs'
  | 'efi'
  | 'apkovl'
  | 'iso'
  | 'disk'
  | 'sign';

export type BuildProgress =
  | { stage: StageName; state: 'start' }
  | { stage: StageName; state: 'progress'; done: number; total: number; item?: string }
  | { stage: StageName; state: 'done'; cached: boolean; ms: number; detail?: string };

export interface ImageManifest {
  format: 'psyops-image-manifest/1';
  filename: string;
  version: string;
  arch: string;
  flavor: string;
  volumeId: string;
  kernel: string;
  alpine: string;
  size: number;
  sha256: string;
  kernelCmdline: string;
  build: { date: string; sourceDateEpoch: number; gitRevision: string | null; gitDirty: boolean | null };
  repositories: string[];
  world: string[];
  packages: PackageRecord[];
  bootPackages: PackageRecord[];
}

export interface PackageRecord {
  name: string;
  version: string;
  checksum: string;
  repository: string;
}

export interface BuildIsoResult {
  iso: string;
  signature: string;
  manifestPath: string;
  manifest: ImageManifest;
  stages: { stage: StageName; cached: boolean; ms: number }[];
}

/** The architecture of each image flavor. */
export const ARCH_OF_FLAVOR = { pc: 'x86_64', rpi: 'aarch64' } as const;

/** Runs one step of the build: its progress events around it, its time recorded. */
type Step = <T>(stage: StageName, work: () => Promise<StageResult<T>>, detail?: (value: T) => string) => Promise<T>;

function stepReporter(report: (event: BuildProgress) => void, timings: BuildIsoResult['stages'], signal: AbortSignal | undefined): Step {
  return async (stage, work, detail) => {
    signal?.throwIfAborted();
    report({ stage, state: 'start' });
    const started = performance.now();
    const { value, cached } = await work();
    const ms = Math.round(performance.now() - started);
    timings.push({ stage, cached, ms });
    const text = detail?.(value);
    report({ stage, state: 'done', cached, ms, ...(text ? { detail: text } : {}) });
    return value;
  };
}

/** A step that is not cached. */
const uncached = async <T>(value: T | Promise<T>): Promise<StageResult<T>> => ({ value: await value, cached: false });

const DEFAULT_LOCK_WAIT_MS = 20 * 60_000;

/**
 * Builds the image and writes `<image.outDir>/psyopsOS-<release>-<arch>.iso` with its `.minisig`
 * and `.json` manifest.
 */
export async function buildIso(options: BuildIsoOptions): Promise<BuildIsoResult> {
  return withBuildLocks(options, async (arch, report) => {
    const built = await buildParts(options, arch, report, { efi: true });
    const { step, cache, facts, boot, rootImage, apkovl } = built;
    const { release, volumeId, cmdline, mtime } = facts;
    const kernelFlavor = options.image.kernel;
    const iso = await step('iso', () =>
      isoStage(cache, { ...boot, rootImage, efi: built.efi!, apkovl, volumeId, release, arch, kernelFlavor, cmdline, mtime }),
    );
    const filename = basename(iso);
    const manifestName = filename.replace(/\.iso$/, '.json');
    const manifest = await publishOutputs(options.image.outDir, step, options.signal, async (staging) => {
      const stagedIso = join(staging, filename);
      await copyFile(iso, stagedIso);
      const manifest = imageManifest(facts, { filename, size: (await stat(stagedIso)).size, sha256: await sha256File(stagedIso) });
      await writeFile(join(staging, `${filename}.minisig`), await signFile(stagedIso, options.secretKey, { trustedComment: imageComment(manifest) }));
      await writeFile(join(staging, manifestName), `${JSON.stringify(manifest, null, 2)}\n`);
      return manifest;
    });
    const out = join(options.image.outDir, filename);
    return { iso: out, signature: `${out}.minisig`, manifestPath: join(options.image.outDir, manifestName), manifest, stages: built.stages };
  });
}

export interface BuildDiskOptions extends BuildIsoOptions {
  /** Size of each OS slot (default: twice the slot content, at least 64 MiB). */
  slotSizeMiB?: number;
  /**
   * A node's secret volume (ext4 labelled psyops-secret, as `psyops node create --out` writes it)
   * for the secret partition; the disk is then named `…-<its nodename>.img` and written 0600.
   * Default: an empty volume.
   */
  secretVolume?: string;
}

export interface DiskManifest extends ImageManifest {
  /** Each partition in disk order: GPT name, file system label, byte offset and size, type GUID. */
  partitions: DiskPartition[];
  /** The slot content's own description (psyopsOS-slot.json). */
  slot: SlotManifest;
  /** The update artifact written beside the disk. */
  update: { filename: string; size: number; sha256: string; trustedComment: string };
  /** The node whose secret volume the disk carries, or null. */
  node: string | null;
}

export interface BuildDiskResult {
  disk: string;
  signature: string;
  manifestPath: string;
  manifest: DiskManifest;
  /** `psyopsOS-<release>-<arch>.tar` and its signature. */
  update: string;
  updateSignature: string;
  stages: { stage: StageName; cached: boolean; ms: number }[];
}

/**
 * build-disk: the same stages as buildIso up to the boot files, then the A/B disk image
 * (`psyopsOS-<release>-<arch>.img`, or `…-<node>.img` with a secret volume) and the update artifact
 * `psyopsOS-<release>-<arch>.tar`, each with a `.minisig`; the disk's `.img.json` manifest lists its
 * partitions. UEFI boot only.
 */
export async function buildDisk(options: BuildDiskOptions): Promise<BuildDiskResult> {
  // Checked before the build: a wrong file fails at once.
  const nodeName = options.secretVolume !== undefined ? await secretVolumeNodeName(options.secretVolume) : undefined;
  const slotSizeMiB = options.slotSizeMiB;
  if (slotSizeMiB !== undefined && (!Number.isInteger(slotSizeMiB) || slotSizeMiB < 64 || slotSizeMiB > 1024 * 1024)) {
    throw new ImageConfigError(`the slot size must be a whole number of MiB from 64 to 1048576, not ${slotSizeMiB}`);
  }
  return withBuildLocks(
    options,
    async (arch, report) => {
      const built = await buildParts(options, arch, report, { efi: false });
      const { step, cache, facts, boot, rootImage, apkovl } = built;
      const { release, alpine, cmdline, mtime, kernelVersion } = facts;
      const kernelFlavor = options.image.kernel;
      const slot: SlotSource = {
        release,
        arch,
        kernelVersion,
        alpine,
        kernelFlavor,
        apkovl,
        kernelImage: boot.kernel.image,
        initramfs: boot.initramfs,
        modloop: boot.modloop,
        rootImage,
        cmdline,
      };
      const keyId = formatKeyId(options.secretKey.keyId);
      const disk = await step(
        'disk',
        () =>
          diskStage(cache, {
            slot,
            kernelFlavor,
            cmdline,
            mtime,
            secretKey: options.secretKey,
            keyId,
            ...(slotSizeMiB !== undefined ? { slotMiB: slotSizeMiB } : {}),
          }),
        (value) => `slots of ${value.partitions.at(-1)!.size / 2 ** 20} MiB`,
      );
      const base = `psyopsOS-${release}-${arch}`;
      const diskName = `${base}${nodeName !== undefined ? `-${nodeName}` : ''}.img`;
      const tarName = `${base}.tar`;
      const manifestName = `${diskName}.json`;
      const manifest = await publishOutputs(options.image.outDir, step, options.signal, async (staging) => {
        const stagedDisk = join(staging, diskName);
        await copyFile(disk.image, stagedDisk);
        if (options.secretVolume) {
          // It carries the node's keys: readable by its owner only, before anything is written into it.
          await chmod(stagedDisk, 0o600);
          await placeSecretVolume(stagedDisk, disk.partitions, options.secretVolume);
        }
        const stagedTar = join(staging, tarName);
        await copyFile(disk.tar, stagedTar);
        const trustedComment = `type=psyopsOS version=${release} filename=${tarName} kernel=${kernelVersion} alpine=${alpine} arch=${arch}`;
        await writeFile(join(staging, `${tarName}.minisig`), await signFile(stagedTar, options.secretKey, { trustedComment }));
        const update = { filename: tarName, size: (await stat(stagedTar)).size, sha256: await sha256File(stagedTar), trustedComment };
        const manifest: DiskManifest = {
          ...imageManifest(facts, { filename: diskName, size: (await stat(stagedDisk)).size, sha256: await sha256File(stagedDisk) }),
          partitions: disk.partitions,
          slot: disk.slotManifest,
          update,
          node: nodeName ?? null,
        };
        await writeFile(join(staging, `${diskName}.minisig`), await signFile(stagedDisk, options.secretKey, { trustedComment: imageComment(manifest) }));
        await writeFile(join(staging, manifestName), `${JSON.stringify(manifest, null, 2)}\n`);
        return manifest;
      });
      const out = (name: string) => join(options.image.outDir, name);
      return {
        disk: out(diskName),
        signature: out(`${diskName}.minisig`),
        manifestPath: out(manifestName),
        manifest,
        update: out(tarName),
        updateSignature: out(`${tarName}.minisig`),
        stages: built.stages,
      };
    },
    ['sfdisk', 'mkfs.ext4', 'debugfs'],
  );
}

/** An image's trusted comment: what a node or operator checks before using it. */
const imageComment = (manifest: ImageManifest) =>
  `filename=${manifest.filename} version=${manifest.version} kernel=${manifest.kernel} alpine=${manifest.alpine}`;

/**
 * Holds the cache and output directories for `build`, after removing what a killed build left.
 * Every host tool is checked first.
 */
async function withBuildLocks<T>(
  options: BuildIsoOptions,
  build: (arch: string, report: (event: BuildProgress) => void) => Promise<T>,
  extraTools: readonly HostTool[] = [],
): Promise<T> {
  const arch = validatedArch(options.image);
  await requireHostTools();
  await requireTools(extraTools);
  const report = options.onProgress ?? (() => undefined);
  const locks = await lockBuildDirectories(options, report);
  try {
    // Holding both locks, nothing else uses these: what a killed build left is removed first.
    await recoverInterruptedPublish(options.image.outDir);
    await removeStageLeftovers(options.cacheDir);
    return await build(arch, report);
  } finally {
    for (const lock of locks.reverse()) await lock.release();
  }
}

/**
 * The cache directory, then the output directory (always in this order, so two builds sharing
 * only one of them cannot deadlock). A wait is reported as the `lock` stage.
 */
async function lockBuildDirectories(options: BuildIsoOptions, report: (event: BuildProgress) => void): Promise<DirectoryLock[]> {
  const started = performance.now();
  const holders: number[] = [];
  const lockOptions: LockOptions = {
    waitMs: options.lockWaitMs ?? DEFAULT_LOCK_WAIT_MS,
    onWait: (owner, file) => {
      if (holders.length === 0) report({ stage: 'lock', state: 'start' });
      holders.push(owner.pid);
      report({ stage: 'lock', state: 'progress', done: 0, total: 1, item: `waiting for pid ${owner.pid}, which holds ${file}` });
    },
    ...(options.signal ? { signal: options.signal } : {}),
  };
  const locks = [await lockDirectory(options.cacheDir, CACHE_LOCK, lockOptions)];
  try {
    locks.push(await lockDirectory(options.image.outDir, OUTPUT_LOCK, lockOptions));
  } catch (error) {
    await locks[0]!.release();
    throw error;
  }
  if (holders.length > 0) {
    report({ stage: 'lock', state: 'done', cached: false, ms: Math.round(performance.now() - started), detail: `waited for pid ${holders.join(', pid ')}` });
  }
  return locks;
}

/** What both media are made from: the stages up to the boot files, and the facts the manifests state. */
interface BuiltParts {
  step: Step;
  cache: StageCache;
  stages: BuildIsoResult['stages'];
  facts: ImageFacts;
  boot: { kernel: KernelFiles; modloop: string; initramfs: string };
  rootImage: string;
  apkovl: string;
  /** The ISO's UEFI loader (only when asked for). */
  efi: EfiBoot | undefined;
}

async function buildParts(options: BuildIsoOptions, arch: string, report: (event: BuildProgress) => void, want: { efi: boolean }): Promise<BuiltParts> {
  const { image, cacheDir, signal, siteUrl } = options;
  const { world, hostname, overlay, kernel: kernelFlavor } = image;
  const stages: BuildIsoResult['stages'] = [];
  const step = stepReporter(report, stages, signal);
  const cache: StageCache = { dir: cacheDir, rebuild: options.rebuild ?? false, ...(signal ? { signal } : {}) };
  const offline = options.offline ?? false;
  const repositoryUrls = options.repositories.map((repository) => repository.url);
  // etc/apk/repositories lines: a tagged repository as `@tag URL`, as apk reads it.
  const repositoryLines = options.repositories.map((repository) => (repository.tag !== undefined ? `@${repository.tag} ${repository.url}` : repository.url));

  const repositories = await step(
    'indexes',
    async () => ({ value: await loadRepositories(options.repositories, { arch, cacheDir, offline, signal }), cached: offline }),
    () => `${repositoryUrls.length} repositories`,
  );
  const sets = await step(
    'resolve',
    () => uncached(resolveSets(image, repositories)),
    ({ root, boot }) => `${root.length} packages in the root, ${boot.length} for booting`,
  );
  // Time stamps of everything: without SOURCE_DATE_EPOCH the newest package's, so the package stages stay cached.
  const mtime = options.sourceDateEpoch ?? Math.max(0, ...[...sets.root, ...sets.boot].map((item) => item.entry.buildTime ?? 0));
  const release = image.release ?? yymmdd(mtime);
  const alpine = alpineRelease(sets.root, repositories);
  const volumeId = volumeIdFor(release, arch);
  const onProgress = (done: number, total: number, item: string) => report({ stage: 'fetch', state: 'progress', done, total, item });
  const packages = await step(
    'fetch',
    () => uncached(fetchSets(sets, repositories, { cacheDir, offline, signal, onProgress })),
    ({ count }) => `${count} packages`,
  );

  // Independent chains, side by side: the root (assembly, then its squashfs), the boot files
  // (kernel package extraction, modloop, initramfs) and the EFI loader. Unpacking one while
  // mksquashfs packs another keeps both cores busy.
  const keysDirs = options.repositories.map((repository) => repository.keysDir);
  const [rootImage, boot, efi] = await sideBySide([
    step(
      'rootfs',
      () => rootfsStage(cache, { packages: packages.root, world, repositories: nodeRepositories(repositoryLines, siteUrl), keysDirs, arch, mtime }),
      (tree) => `${tree.firstBootScripts} first-boot scripts`,
    ).then((tree) => step('root-image', () => rootImageStage(cache, tree, mtime))),
    step(
      'boot-packages',
      () => bootPackagesStage(cache, { packages: packages.boot, kernelFlavor, mtime }),
      (files) => `kernel ${files.kernel.kernelVersion}`,
    ).then(async (files) => {
      const modloop = await step('modloop', () => modloopStage(cache, files.kernel, mtime));
      const initramfs = await step('initramfs', () => initramfsStage(cache, { boot: files, volumeId, release, kernelFlavor, mtime }));
      return { kernel: files.kernel, modloop, initramfs };
    }),
    want.efi ? step('efi', () => efiStage(cache, volumeId, mtime)) : Promise.resolve(undefined),
  ]);

  const buildInfo: BuildInfo = { date: isoDate(options.sourceDateEpoch ?? Math.floor(Date.now() / 1000)), ...(await gitState(options.gitDir)) };
  const apkovl = await step('apkovl', () => apkovlStage(cache, { hostname, world, overlay, siteUrl, buildInfo, release, alpine, arch, mtime }));
  // no_timer_check: a TCG guest on a loaded host can miss the kernel's IO-APIC timer check and panic
  // ("IO-APIC + timer doesn't work"); on real hardware the check is only skipped. The boot loaders
  // pass the command line, so QEMU cannot add it to an ISO boot: every image carries it.
  const cmdline = `quiet no_timer_check ${image.kernelCmdline}`.trim();
  const facts = {
    image,
    release,
    alpine,
    arch,
    volumeId,
    kernelVersion: boot.kernel.kernelVersion,
    cmdline,
    buildInfo,
    mtime,
    repositoryUrls,
    repositories,
    sets,
  };
  return { step, cache, stages, facts, boot, rootImage, apkovl, efi };
}

export function validatedArch(image: Pick<ImageSettings, 'flavor' | 'world'>): string {
  if (image.flavor !== 'pc') {
    throw new ImageConfigError(
      `image flavor "${image.flavor}" (${ARCH_OF_FLAVOR[image.flavor] ?? 'unknown'}) is not supported yet: only "pc" (x86_64) images can be built`,
    );
  }
  if (image.world.length === 0) throw new ImageConfigError('the image world is empty: list the packages of the root in image.world');
  return ARCH_OF_FLAVOR.pc;
}

/** Every host tool up front: a missing one fails before any work, naming its Debian package. */
async function requireHostTools(): Promise<void> {
  await requireTools(['xorriso', 'mksquashfs', 'mformat', 'mcopy', 'grub-mkimage']);
  for (const file of ['isolinuxBin', 'isohdpfxBin', 'syslinuxModules', 'grubEfiModules'] as const) await requireHostFile(file);
}

export interface PackageSets<T> {
  /** The root's packages (the world), in install order. */
  root: T[];
  /** The kernel package and the initramfs packages, in install order. */
  boot: T[];
}

export function resolveSets(
  image: Pick<ImageSettings, 'world' | 'kernel' | 'initramfsPackages'>,
  repositories: readonly LoadedRepository[],
): PackageSets<ResolvedPackage> {
  const indexes = repositories.map((repository) => ({
    entries: repository.entries,
    source: repository.url,
    ...(repository.tag !== undefined ? { tag: repository.tag } : {}),
  }));
  const root = resolveWorld(image.world, indexes);
  requireBootPackages(image, repositories);
  return { root, boot: resolveWorld([`linux-${image.kernel}`, ...image.initramfsPackages], indexes) };
}

/**
 * The kernel package and each initramfs package must be in some repository: said here in the
 * words of the config (image.kernel, image.initramfsPackages) rather than as an unsatisfiable world.
 * The initramfs's busybox must be static: on Alpine that is `busybox-static` (bin/busybox.static),
 * Alpine's `busybox` being dynamically linked.
 */
function requireBootPackages(image: Pick<ImageSettings, 'kernel' | 'initramfsPackages'>, repositories: readonly LoadedRepository[]): void {
  const names = new Set<string>();
  for (const repository of repositories)
    for (const entry of repository.entries) {
      names.add(entry.name);
      for (const provided of entry.provides) names.add(provided.replace(/[=<>~].*$/, ''));
    }
  const where = repositories.map((repository) => repository.url).join(', ');
  const kernel = `linux-${image.kernel}`;
  if (!names.has(kernel)) throw new ImageConfigError(`image.kernel "${image.kernel}": no repository has the kernel package ${kernel} (repositories: ${where})`);
  for (const item of image.initramfsPackages) {
    const name = item.replace(/[@=<>~].*$/, '');
    if (names.has(name)) continue;
    const busybox = /busybox/.test(name)
      ? "; the initramfs needs a static busybox: Alpine's busybox-static from main (bin/busybox.static; Alpine's busybox is dynamically linked), or a package whose bin/busybox is statically linked"
      : '';
    throw new ImageConfigError(`image.initramfsPackages: no repository has ${name} (repositories: ${where})${busybox}`);
  }
}

/** Fetches the packages of both sets, each once. */
async function fetchSets(
  sets: PackageSets<ResolvedPackage>,
  repositories: readonly LoadedRepository[],
  options: FetchPackagesOptions,
): Promise<PackageSets<FetchedPackage> & { count: number }> {
  const unique = [...new Map([...sets.root, ...sets.boot].map((item) => [item.entry.identity, item])).values()];
  const files = new Map((await fetchPackages(unique, repositories, options)).map((file) => [file.entry.identity, file]));
  const filesOf = (set: ResolvedPackage[]) => set.map((item) => files.get(item.entry.identity)!);
  return { root: filesOf(sets.root), boot: filesOf(sets.boot), count: unique.length };
}

/** Awaits independent work; a failing one must not leave the others running behind the error. */
async function sideBySide<T extends readonly unknown[]>(work: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const failed = (await Promise.allSettled(work)).find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
  return (await Promise.all(work)) as unknown as T;
}

function yymmdd(epoch: number): string {
  return new Date(epoch * 1000).toISOString().slice(2, 10).replaceAll('-', '');
}

const isoDate = (epoch: number) => new Date(epoch * 1000).toISOString().replace('.000Z', 'Z');

async function gitState(dir: string | undefined): Promise<Pick<BuildInfo, 'gitRevision' | 'gitDirty'>> {
  const git = findProgram('git');
  if (!dir || !git) return { gitRevision: null, gitDirty: null };
  const run = (args: string[]) => runTool(git, ['-C', dir, ...args], { timeoutMs: 10_000 }).catch(() => undefined);
  const revision = await run(['rev-parse', '--verify', 'HEAD']);
  if (revision === undefined) return { gitRevision: null, gitDirty: null };
  const status = await run(['status', '--porcelain']);
  return { gitRevision: revision.trim(), gitDirty: status === undefined ? null : status.trim() !== '' };
}

/** What the manifest says about the image besides its file. */
interface ImageFacts {
  image: ImageSettings;
  release: string;
  alpine: string;
  arch: string;
  volumeId: string;
  kernelVersion: string;
  cmdline: string;
  buildInfo: BuildInfo;
  mtime: number;
  /** As given, highest priority first. */
  repositoryUrls: string[];
  repositories: readonly LoadedRepository[];
  sets: PackageSets<ResolvedPackage>;
}

function imageManifest(facts: ImageFacts, file: { filename: string; size: number; sha256: string }): ImageManifest {
  const { image, buildInfo, sets } = facts;
  const records = (set: readonly ResolvedPackage[]): PackageRecord[] =>
    set
      .map((item) => ({
        name: item.entry.name,
        version: item.entry.version,
        checksum: item.entry.identity,
        repository: facts.repositories[item.repository]?.url ?? '',
      }))
      .sort((a, b) => a.name.localeCompare(b.name));
  return {
    format: 'psyops-image-manifest/1',
    filename: file.filename,
    version: facts.release,
    arch: facts.arch,
    flavor: image.flavor,
    volumeId: facts.volumeId,
    kernel: facts.kernelVersion,
    alpine: facts.alpine,
    size: file.size,
    sha256: file.sha256,
    kernelCmdline: facts.cmdline,
    build: { date: buildInfo.date, sourceDateEpoch: facts.mtime, gitRevision: buildInfo.gitRevision, gitDirty: buildInfo.gitDirty },
    repositories: facts.repositoryUrls,
    world: image.world,
    packages: records(sets.root),
    bootPackages: records(sets.boot),
  };
}

/**
 * The Alpine release an image is made from, for its manifest and /etc/psyopsOS/iso.json: the
 * root's `alpine-release` package (else `alpine-base`, same version) without its `-rN`, which is
 * what `/etc/alpine-release` says (`3.22.2`); else the branch of the first Alpine repository that
 * has one (`v3.22/main` → `3.22`, `edge/testing` → `edge`); else `none` (no Alpine in the image).
 */
export function alpineRelease(root: readonly ResolvedPackage[], repositories: readonly Pick<LoadedRepository, 'alpine'>[]): string {
  for (const name of ['alpine-release', 'alpine-base']) {
    const version = root.find((item) => item.entry.name === name)?.entry.version;
    if (version !== undefined) return version.replace(/-r\d+$/, '');
  }
  for (const { alpine } of repositories) {
    const branch = alpine?.split('/')[0];
    if (branch === undefined) continue;
    if (/^v\d+\.\d+$/.test(branch)) return branch.slice(1);
    if (branch === 'edge') return 'edge';
  }
  return 'none';
}

/** Names in outDir: a set being written (removed if a build dies), and a complete set being moved into place. */
const STAGING_PREFIX = '.build-';
const COMPLETE_PREFIX = '.publish-';

/**
 * The sign step and the outputs, published together: `prepare` writes the set (the image, its
 * `.minisig`, manifest…) into a hidden folder inside outDir; each file is fsynced, the folder is
 * renamed to mark the set complete, and its files are moved into place one by one, the images
 * last (whoever sees a new image finds its signature and manifest). A crash while moving leaves
 * the complete set, and the next build finishes moving it (recoverInterruptedPublish) first.
 */
async function publishOutputs<T>(outDir: string, step: Step, signal: AbortSignal | undefined, prepare: (staging: string) => Promise<T>): Promise<T> {
  await mkdir(outDir, { recursive: true });
  const id = randomBytes(4).toString('hex');
  const staging = join(outDir, `${STAGING_PREFIX}${id}`);
  try {
    const value = await step('sign', async () => {
      await mkdir(staging);
      const value = await prepare(staging);
      for (const name of await readdir(staging)) await syncToDisk(join(staging, name));
      return uncached(value);
    });
    // The last moment to stop: once the set is complete it is published (by this build or the next).
    signal?.throwIfAborted();
    const complete = join(outDir, `${COMPLETE_PREFIX}${id}`);
    await rename(staging, complete);
    await syncToDisk(outDir);
    await moveSetIntoPlace(complete, outDir);
    return value;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/**
 * Finishes what a build that died while publishing left in outDir: a complete set is moved into
 * place, an unfinished one removed. Only while holding outDir's lock (no other build is publishing).
 */
export async function recoverInterruptedPublish(outDir: string): Promise<void> {
  const entries = await readdir(outDir).catch(() => [] as string[]);
  for (const entry of entries) {
    if (entry.startsWith(COMPLETE_PREFIX)) await moveSetIntoPlace(join(outDir, entry), outDir);
    else if (entry.startsWith(STAGING_PREFIX)) await rm(join(outDir, entry), { recursive: true, force: true });
  }
}

/** An image or update artifact: moved into place after its signature and manifest. */
const isArtifact = (name: string) => /\.(iso|img|tar)$/.test(name);

/** Renames every file of the set directory into outDir, the artifacts last, then removes the empty directory. */
async function moveSetIntoPlace(setDir: string, outDir: string): Promise<void> {
  const names = (await readdir(setDir)).sort((a, b) => Number(isArtifact(a)) - Number(isArtifact(b)));
  for (const name of names) await rename(join(setDir, name), join(outDir, name));
  await syncToDisk(outDir);
  await rmdir(setDir);
}

/** fsync of a file or directory (a directory's fsync makes the renames in it durable). */
async function syncToDisk(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
