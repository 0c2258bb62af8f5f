/**
 * build-iso: APK repositories + world + overlay → a signed, reproducible, hybrid BIOS/UEFI ISO.
 * One function per stage (in their own modules); this one wires them together, caches each by
 * the hash of its inputs, and writes the outputs only once all of them are complete.
 */
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { resolve as resolveWorld, type ResolvedPackage } from '@psyops/apkpkg';
import { signFile, type SecretKey } from '@psyops/signing';
import { buildApkovl } from './apkovl.js';
import { bootLoaderConfigs, buildEfiBoot, volumeIdFor } from './bootloader.js';
import { findProgram, runTool, sha256File } from '@psyops/core';
import { ImageConfigError } from './errors.js';
import { buildInitramfs } from './initramfs.js';
import { writeIso } from './iso.js';
import { fetchPackages } from './packages.js';
import { loadRepositories, type LoadedRepository } from './repositories.js';
import { assembleRootTree, extractTree, findKernel, findStaticBusybox, type RootTree } from './rootfs.js';
import { buildModloop, buildRootImage } from './squashfs.js';
import { runStage } from './stage.js';
import { requireHostFile, requireTools } from './tools.js';

/** What the image is: the workspace's `image` section, with paths resolved. */
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
  overlayDir?: string;
  kernelCmdline: string;
  hostname: string;
  /** Base URL of the site nodes configure themselves from (written to /etc/psyopsOS/site.url). */
  siteUrl?: string;
}

export interface BuildIsoOptions extends ImageSettings {
  /** Highest priority first: http(s) URLs or local directories, each with its trusted keys. */
  repositories: { url: string; keysDir: string }[];
  outDir: string;
  /** Package cache and stage outputs. */
  cacheDir: string;
  /** Signs the ISO. */
  secretKey: SecretKey;
  /** Timestamps of everything in the image; default: the newest package's build time. */
  sourceDateEpoch?: number;
  /** Use only cached indexes and packages. */
  offline?: boolean;
  /** Rebuild every stage even when cached. */
  rebuild?: boolean;
  /** Directory whose git revision and dirty flag go into /etc/psyopsOS/iso.json (e.g. the workspace). */
  gitDir?: string;
  onProgress?: (event: BuildProgress) => void;
  signal?: AbortSignal;
}

export const STAGES = ['indexes', 'resolve', 'fetch', 'rootfs', 'boot-packages', 'modloop', 'root-image', 'initramfs', 'efi', 'apkovl', 'iso', 'sign'] as const;
export type StageName = (typeof STAGES)[number];

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
  packages: { name: string; version: string; checksum: string; repository: string }[];
  bootPackages: { name: string; version: string; checksum: string; repository: string }[];
}

export interface BuildIsoResult {
  iso: string;
  signature: string;
  manifestPath: string;
  manifest: ImageManifest;
  stages: { stage: StageName; cached: boolean; ms: number }[];
}

const ARCH_OF_FLAVOR = { pc: 'x86_64', rpi: 'aarch64' } as const;

/** The apkovl's postboot hook: the console contract's "booted" line, then nodeboot (which ends with the "postboot" line). */
function postbootHook(release: string): string {
  return `#!/bin/sh
# psyopsOS postboot hook (written by psyops build-iso): reports the boot on every console, then
# hands over to nodeboot, which prints the final "psyopsOS: postboot ..." line itself.
release='${release}'
# Shell built-ins only: every process is slow to start under emulation, and this is the boot's critical path.
root=
while read -r _ mountpoint type _; do
	[ "$mountpoint" = / ] && root=$type
done < /proc/mounts
consoles=
{ read -r consoles < /sys/class/tty/console/active; } 2>/dev/null
console() {
	for tty in $consoles; do
		[ -c "/dev/$tty" ] && echo "$*" > "/dev/$tty" 2>/dev/null
	done
	return 0
}
total=0
available=0
while read -r key kib _; do
	case "$key" in
		MemTotal:) total=$kib ;;
		MemAvailable:) available=$kib ;;
	esac
done < /proc/meminfo
console "psyopsOS: booted release=$release root=$root"
console "psyopsOS: memory used_kib=$((total - available)) total_kib=$total"
if [ -f /usr/lib/psyops/nodeboot.mjs ] && command -v node >/dev/null 2>&1; then
	exec node /usr/lib/psyops/nodeboot.mjs postboot --print-status
fi
console "psyopsOS: postboot skipped: nodeboot is not installed in this image"
`;
}

function yymmdd(epoch: number): string {
  return new Date(epoch * 1000).toISOString().slice(2, 10).replaceAll('-', '');
}

async function gitState(dir: string | undefined): Promise<{ gitRevision: string | null; gitDirty: boolean | null }> {
  const git = findProgram('git');
  if (!dir || !git) return { gitRevision: null, gitDirty: null };
  const run = (args: string[]) => runTool(git, ['-C', dir, ...args], { timeoutMs: 10_000 }).catch(() => undefined);
  const revision = await run(['rev-parse', '--verify', 'HEAD']);
  if (revision === undefined) return { gitRevision: null, gitDirty: null };
  const status = await run(['status', '--porcelain']);
  return { gitRevision: revision.trim(), gitDirty: status === undefined ? null : status.trim() !== '' };
}

/** Paths, modes and content hashes of the overlay: what the apkovl depends on. */
async function overlayFingerprint(dir: string | undefined): Promise<string[] | null> {
  if (!dir || !(await stat(dir).then((s) => s.isDirectory(), () => false))) return null;
  const entries: string[] = [];
  for (const name of (await readdir(dir, { recursive: true })).sort()) {
    const path = join(dir, name);
    const info = await stat(path);
    const hash = info.isFile() ? createHash('sha256').update(await readFile(path)).digest('hex') : '';
    entries.push(`${name} ${info.mode.toString(8)} ${hash}`);
  }
  return entries;
}

async function keyFingerprints(keysDirs: string[]): Promise<string[]> {
  const result: string[] = [];
  for (const dir of [...new Set(keysDirs)].sort()) {
    const names = (await readdir(dir).catch(() => [] as string[])).filter((name) => name.endsWith('.pub')).sort();
    for (const name of names) result.push(`${name} ${createHash('sha256').update(await readFile(join(dir, name))).digest('hex')}`);
  }
  return result;
}

const packageRecord = (repositories: LoadedRepository[]) => (item: ResolvedPackage) => ({
  name: item.entry.name,
  version: item.entry.version,
  checksum: item.entry.identity,
  repository: repositories[item.repository]?.url ?? '',
});

/** Builds the image and writes `<outDir>/psyopsOS-<release>-<arch>.iso` with its `.minisig` and `.json` manifest. */
export async function buildIso(options: BuildIsoOptions): Promise<BuildIsoResult> {
  if (options.flavor !== 'pc') {
    throw new ImageConfigError(`image flavor "${options.flavor}" (${ARCH_OF_FLAVOR[options.flavor] ?? 'unknown'}) is not supported yet: only "pc" (x86_64) images can be built`);
  }
  const arch = ARCH_OF_FLAVOR.pc;
  if (options.world.length === 0) throw new ImageConfigError('the image world is empty: list the packages of the root in image.world');
  // Every host tool up front: a missing one fails before any work, naming its Debian package.
  await requireTools(['xorriso', 'mksquashfs', 'mformat', 'mcopy', 'grub-mkimage']);
  for (const file of ['isolinuxBin', 'isohdpfxBin', 'syslinuxModules', 'grubEfiModules'] as const) await requireHostFile(file);

  const report = options.onProgress ?? (() => undefined);
  const timings: BuildIsoResult['stages'] = [];
  const timed = async <T>(stage: StageName, work: () => Promise<{ value: T; cached: boolean; detail?: string }>): Promise<T> => {
    report({ stage, state: 'start' });
    const started = performance.now();
    const { value, cached, detail } = await work();
    const ms = Math.round(performance.now() - started);
    timings.push({ stage, cached, ms });
    report({ stage, state: 'done', cached, ms, ...(detail ? { detail } : {}) });
    return value;
  };
  const stageOptions = { rebuild: options.rebuild ?? false };
  const { cacheDir, signal } = options;

  const repositories = await timed('indexes', async () => ({
    value: await loadRepositories(options.repositories, { arch, cacheDir, offline: options.offline ?? false, ...(signal ? { signal } : {}) }),
    cached: options.offline ?? false,
    detail: `${options.repositories.length} repositories`,
  }));
  const indexes = repositories.map((repository) => ({ entries: repository.entries, source: repository.url }));

  const { rootSet, bootSet } = await timed('resolve', async () => {
    const rootSet = resolveWorld(options.world, indexes);
    const bootSet = resolveWorld([`linux-${options.kernel}`, ...options.initramfsPackages], indexes);
    return { value: { rootSet, bootSet }, cached: false, detail: `${rootSet.length} packages in the root, ${bootSet.length} for booting` };
  });

  const epoch =
    options.sourceDateEpoch ?? Math.max(0, ...[...rootSet, ...bootSet].map((item) => item.entry.buildTime ?? 0));
  const release = options.release ?? yymmdd(epoch);
  const volumeId = volumeIdFor(release, arch);

  const fetched = await timed('fetch', async () => {
    const unique = [...new Map([...rootSet, ...bootSet].map((item) => [item.entry.identity, item])).values()];
    const files = await fetchPackages(unique, repositories, {
      cacheDir,
      offline: options.offline ?? false,
      onProgress: (done, total, item) => report({ stage: 'fetch', state: 'progress', done, total, item }),
      ...(signal ? { signal } : {}),
    });
    return { value: new Map(files.map((file) => [file.entry.identity, file])), cached: false, detail: `${unique.length} packages` };
  });
  const filesOf = (set: ResolvedPackage[]) => set.map((item) => fetched.get(item.entry.identity)!);
  const identities = (set: ResolvedPackage[]) => set.map((item) => item.entry.identity);

  const keysDirs = options.repositories.map((repository) => repository.keysDir);
  // Two independent chains, run side by side: the root (assembly, then its squashfs) and the
  // boot files (kernel package extraction, modloop, initramfs). Unpacking one while mksquashfs
  // packs the other keeps both cores busy.
  const rootChain = async () => {
    const rootfs = await timed('rootfs', async () => {
      const inputs = { packages: identities(rootSet), world: options.world, repositories: options.repositories.map((r) => r.url), keys: await keyFingerprints(keysDirs), arch, epoch };
      const result = await runStage(
        cacheDir,
        'rootfs',
        inputs,
        async (dir) => {
          const tree = await assembleRootTree({
            packages: filesOf(rootSet),
            world: options.world,
            repositories: options.repositories.map((repository) => repository.url),
            keysDirs,
            arch,
            outDir: join(dir, 'root'),
            mtime: epoch,
          });
          await writeFile(join(dir, 'tree.json'), JSON.stringify({ specialEntries: tree.specialEntries, devices: tree.devices, firstBootScripts: tree.firstBootScripts }));
        },
        stageOptions,
      );
      const tree = JSON.parse(await readFile(join(result.dir, 'tree.json'), 'utf8')) as Pick<RootTree, 'specialEntries' | 'devices' | 'firstBootScripts'>;
      return { value: { ...result, ...tree, root: join(result.dir, 'root') }, cached: result.cached, detail: `${tree.firstBootScripts} first-boot scripts` };
    });

    const rootImage = await timed('root-image', async () => {
      const result = await runStage(
        cacheDir,
        'root-image',
        { rootfs: rootfs.dir, epoch },
        (dir) => buildRootImage({ rootDir: rootfs.root, specialEntries: rootfs.specialEntries, devices: rootfs.devices, out: join(dir, 'rootfs.squashfs'), mtime: epoch }),
        stageOptions,
      );
      return { value: join(result.dir, 'rootfs.squashfs'), cached: result.cached };
    });
    return { rootImage };
  };
  const bootChain = async () => {
    const boot = await timed('boot-packages', async () => {
      const result = await runStage(
        cacheDir,
        'boot-packages',
        { packages: identities(bootSet), kernel: options.kernel, epoch },
        async (dir) => {
          const tree = join(dir, 'tree');
          await extractTree(filesOf(bootSet), tree, epoch);
          const kernel = await findKernel(tree, options.kernel);
          const busybox = await findStaticBusybox(tree);
          const rel = (path: string | undefined) => (path === undefined ? undefined : relative(dir, path));
          await writeFile(
            join(dir, 'boot.json'),
            JSON.stringify({ version: kernel.version, image: rel(kernel.image), modulesDir: rel(kernel.modulesDir), firmwareDir: rel(kernel.firmwareDir), busybox: rel(busybox) }),
          );
        },
        stageOptions,
      );
      const saved = JSON.parse(await readFile(join(result.dir, 'boot.json'), 'utf8')) as { version: string; image: string; modulesDir: string; firmwareDir?: string; busybox: string };
      const abs = (path: string) => join(result.dir, path);
      return {
        value: {
          key: result.dir,
          kernelVersion: saved.version,
          image: abs(saved.image),
          modulesDir: abs(saved.modulesDir),
          firmwareDir: saved.firmwareDir === undefined ? undefined : abs(saved.firmwareDir),
          busybox: abs(saved.busybox),
        },
        cached: result.cached,
        detail: `kernel ${saved.version}`,
      };
    });

    const modloop = await timed('modloop', async () => {
      const result = await runStage(
        cacheDir,
        'modloop',
        { boot: boot.key, epoch },
        (dir) =>
          buildModloop({
            kernelVersion: boot.kernelVersion,
            modulesDir: dirname(boot.modulesDir), // the stage functions take the folder holding <kver>/
            ...(boot.firmwareDir ? { firmwareDir: boot.firmwareDir } : {}),
            out: join(dir, 'modloop'),
            mtime: epoch,
          }),
        stageOptions,
      );
      return { value: join(result.dir, 'modloop'), cached: result.cached };
    });

    const initramfs = await timed('initramfs', async () => {
      const result = await runStage(
        cacheDir,
        'initramfs',
        { boot: boot.key, volumeId, release, kernel: options.kernel, epoch },
        async (dir) => {
          await buildInitramfs({
            kernelVersion: boot.kernelVersion,
            modulesDir: dirname(boot.modulesDir), // the stage functions take the folder holding <kver>/
            busybox: boot.busybox,
            volumeId,
            release,
            kernelFlavor: options.kernel,
            out: join(dir, 'initramfs'),
            mtime: epoch,
          });
        },
        stageOptions,
      );
      return { value: join(result.dir, 'initramfs'), cached: result.cached };
    });
    return { boot, modloop, initramfs };
  };
  const efiStage = async () => {
    const efi = await timed('efi', async () => {
      const result = await runStage(cacheDir, 'efi', { volumeId, epoch }, (dir) => buildEfiBoot({ volumeId, outDir: dir, mtime: epoch }).then(() => undefined), stageOptions);
      // buildEfiBoot's layout, known here so a cached stage needs no call.
      return { value: { efiBinary: join(result.dir, 'efi', 'boot', 'bootx64.efi'), efiImage: join(result.dir, 'boot', 'grub', 'efi.img') }, cached: result.cached };
    });
    return efi;
  };
  // allSettled: a failing chain must not leave the other one running behind the error.
  const [rootResult, bootResult, efiResult] = await Promise.allSettled([rootChain(), bootChain(), efiStage()]);
  if (rootResult.status === 'rejected') throw rootResult.reason;
  if (bootResult.status === 'rejected') throw bootResult.reason;
  if (efiResult.status === 'rejected') throw efiResult.reason;
  const { rootImage } = rootResult.value;
  const { boot, modloop, initramfs } = bootResult.value;
  const efi = efiResult.value;

  const buildDate = new Date((options.sourceDateEpoch ?? Math.floor(Date.now() / 1000)) * 1000).toISOString().replace('.000Z', 'Z');
  const git = await gitState(options.gitDir);
  const apkovlName = `${options.hostname}.apkovl.tar.gz`;
  const apkovl = await timed('apkovl', async () => {
    const hook = postbootHook(release);
    const extraFiles = options.siteUrl ? [{ path: 'etc/psyopsOS/site.url', content: `${options.siteUrl}\n`, mode: 0o644 }] : [];
    const inputs = { hostname: options.hostname, world: options.world, release, arch, buildDate, git, overlay: await overlayFingerprint(options.overlayDir), extraFiles, hook, epoch };
    const result = await runStage(
      cacheDir,
      'apkovl',
      inputs,
      (dir) =>
        buildApkovl({
          hostname: options.hostname,
          world: options.world,
          release,
          arch,
          buildInfo: { date: buildDate, ...git },
          ...(inputs.overlay ? { overlayDir: options.overlayDir! } : {}),
          extraFiles,
          postbootHook: hook,
          out: join(dir, apkovlName),
          mtime: epoch,
        }),
      stageOptions,
    );
    return { value: join(result.dir, apkovlName), cached: result.cached };
  });

  const filename = `psyopsOS-${release}-${arch}.iso`;
  const cmdline = `quiet ${options.kernelCmdline}`.trim();
  const isoStage = await timed('iso', async () => {
    const configs = bootLoaderConfigs({ kernelFlavor: options.kernel, cmdline, volumeId });
    const result = await runStage(
      cacheDir,
      'iso',
      { modloop, rootImage, initramfs, efi, apkovl, boot: boot.key, configs, volumeId, release, epoch },
      async (dir) => {
        await writeFile(join(dir, 'syslinux.cfg'), configs.syslinuxCfg);
        await writeFile(join(dir, 'grub.cfg'), configs.grubCfg);
        await writeFile(join(dir, 'release'), `${release} ${arch}\n`);
        const syslinux = await requireHostFile('syslinuxModules');
        const files = [
          { isoPath: `/${apkovlName}`, hostPath: apkovl },
          { isoPath: '/.psyopsOS-release', hostPath: join(dir, 'release') },
          { isoPath: `/boot/vmlinuz-${options.kernel}`, hostPath: boot.image },
          { isoPath: `/boot/initramfs-${options.kernel}`, hostPath: initramfs },
          { isoPath: `/boot/modloop-${options.kernel}`, hostPath: modloop },
          { isoPath: '/boot/rootfs.squashfs', hostPath: rootImage },
          { isoPath: '/boot/syslinux/isolinux.bin', hostPath: await requireHostFile('isolinuxBin') },
          ...['ldlinux.c32', 'libcom32.c32', 'libutil.c32'].map((name) => ({ isoPath: `/boot/syslinux/${name}`, hostPath: join(syslinux, name) })),
          { isoPath: '/boot/syslinux/syslinux.cfg', hostPath: join(dir, 'syslinux.cfg') },
          { isoPath: '/boot/grub/grub.cfg', hostPath: join(dir, 'grub.cfg') },
          { isoPath: '/boot/grub/efi.img', hostPath: efi.efiImage },
          { isoPath: '/efi/boot/bootx64.efi', hostPath: efi.efiBinary },
        ];
        await writeIso({ volumeId, files, out: join(dir, filename), mtime: epoch });
      },
      stageOptions,
    );
    return { value: join(result.dir, filename), cached: result.cached };
  });

  // Outputs: staged in a hidden folder inside outDir, then renamed into place together.
  await mkdir(options.outDir, { recursive: true });
  const staging = join(options.outDir, `.build-${randomBytes(4).toString('hex')}`);
  const iso = join(options.outDir, filename);
  const manifestPath = join(options.outDir, filename.replace(/\.iso$/, '.json'));
  try {
    const manifest = await timed('sign', async () => {
      await mkdir(staging);
      const stagedIso = join(staging, filename);
      await copyFile(isoStage, stagedIso);
      const sha256 = await sha256File(stagedIso);
      const size = (await stat(stagedIso)).size;
      const alpine = rootSet.find((item) => item.entry.name === 'alpine-release' || item.entry.name === 'alpine-base')?.entry.version ?? 'none';
      const manifest: ImageManifest = {
        format: 'psyops-image-manifest/1',
        filename,
        version: release,
        arch,
        flavor: options.flavor,
        volumeId,
        kernel: boot.kernelVersion,
        alpine,
        size,
        sha256,
        kernelCmdline: cmdline,
        build: { date: buildDate, sourceDateEpoch: epoch, ...git },
        repositories: options.repositories.map((repository) => repository.url),
        world: options.world,
        packages: rootSet.map(packageRecord(repositories)).sort((a, b) => a.name.localeCompare(b.name)),
        bootPackages: bootSet.map(packageRecord(repositories)).sort((a, b) => a.name.localeCompare(b.name)),
      };
      const signature = await signFile(stagedIso, options.secretKey, {
        trustedComment: `filename=${filename} version=${release} kernel=${boot.kernelVersion} alpine=${alpine}`,
      });
      await writeFile(join(staging, `${filename}.minisig`), signature);
      await writeFile(join(staging, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
      return { value: manifest, cached: false };
    });
    await rename(join(staging, filename), iso);
    await rename(join(staging, `${filename}.minisig`), `${iso}.minisig`);
    await rename(join(staging, 'manifest.json'), manifestPath);
    return { iso, signature: `${iso}.minisig`, manifestPath, manifest, stages: timings };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
