import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { bootInQemu, type ImageManifest } from '@psyops/imagebuild';
// The stages' own results and host files: the bare tools get exactly the stages' inputs.
import type { EfiBoot } from '../../packages/imagebuild/src/bootloader.ts';
import type { BootFiles, RootTree } from '../../packages/imagebuild/src/rootfs.ts';
import { readStageResult } from '../../packages/imagebuild/src/stage.ts';
import { requireHostFile } from '../../packages/imagebuild/src/tools.ts';
import { CLI, median, TIMEOUT_MS } from './measure.ts';

// The default image's host APK repository is built once (about a minute, by the default build-iso)
// and kept between runs, like the e2e tests keep theirs in .cache/e2e-default-image.
const DEFAULT_HOME = join(import.meta.dirname, '..', '..', '.cache', 'bench-default-image');
const EPOCH = 1700000000;
const FIXED_EPOCH = { SOURCE_DATE_EPOCH: String(EPOCH) };
const IMAGE = { world: ['host-baselayout', 'busybox', 'nodejs'], kernel: 'debian', initramfsPackages: ['busybox'] };
const BOOT_TIMEOUT_MS = 10 * 60_000;
/** The stages' own settings (squashfs.ts, iso.ts, cpio.ts), repeated here for the bare tools. */
const SQUASHFS_COMMON = ['-noappend', '-no-xattrs', '-quiet', '-no-progress', '-mkfs-time', String(EPOCH), '-all-time', String(EPOCH)];
const MODLOOP_OPTIONS = ['-comp', 'zstd', '-Xcompression-level', '9', '-all-root', '-root-mode', '755'];
const ROOT_IMAGE_OPTIONS = ['-comp', 'lz4', '-Xhc', '-root-mode', '755', '-root-uid', '0', '-root-gid', '0'];
const INITRAMFS_GZIP_LEVEL = 6;

const REFERENCE_PARTS = {
  modloop: 'mksquashfs modules',
  rootImage: 'mksquashfs root',
  initramfs: `gzip -${INITRAMFS_GZIP_LEVEL} initramfs`,
  iso: 'xorriso',
} as const;
type ReferencePart = keyof typeof REFERENCE_PARTS;

const seconds = (value: number) => `${value.toFixed(2)} s`;
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

interface Spent {
  wall: number;
  /** User + system seconds of the command and every process it waited for. */
  cpu: number;
}

/**
 * Wall and CPU seconds of one whole command (its output discarded, stderr returned). CPU time,
 * from the shell's `times`, holds up better than wall time while other jobs share the cores.
 */
async function spent(command: string, args: string[], env: Record<string, string> = {}): Promise<Spent & { stderr: string }> {
  const start = process.hrtime.bigint();
  const result = await execa('sh', ['-c', '"$@" > /dev/null || exit; times', 'sh', command, ...args], { env, timeout: TIMEOUT_MS });
  const wall = Number(process.hrtime.bigint() - start) / 1e9;
  const children = String(result.stdout).trim().split('\n').at(-1) ?? '';
  const cpu = [...children.matchAll(/(\d+)m([\d.]+)s/g)].reduce((sum, [, minutes, secs]) => sum + Number(minutes) * 60 + Number(secs), 0);
  return { wall, cpu, stderr: String(result.stderr) };
}

/** `psyops build-iso` in `workspace`, and each stage's own wall time (from its progress lines). */
async function spentBuilding(workspace: string, args: string[]): Promise<Spent & { stages: Map<string, number> }> {
  const { wall, cpu, stderr } = await spent('node', [CLI, '--workspace', workspace, 'build-iso', ...args], FIXED_EPOCH);
  const stages = new Map<string, number>();
  for (const match of stderr.matchAll(/^build-iso: (\S+) \((?:([\d.]+) s|cached)\)/gm)) stages.set(match[1]!, Number(match[2] ?? 0));
  return { wall, cpu, stages };
}

/** The output directory of `stage` that the last build used (cached stages are touched when reused). */
async function lastStageDir(cacheDir: string, stage: string): Promise<string> {
  const stages = join(cacheDir, 'stages');
  const names = (await readdir(stages)).filter((name) => new RegExp(`^${stage}-[0-9a-f]{20}$`).test(name));
  const dated = await Promise.all(names.map(async (name) => ({ dir: join(stages, name), mtime: (await stat(join(stages, name))).mtimeMs })));
  const newest = dated.sort((a, b) => b.mtime - a.mtime)[0];
  if (!newest) throw new Error(`no ${stage} stage in ${stages}`);
  return newest.dir;
}

/** mksquashfs pseudo definitions giving every entry root ownership and its own mode, like buildRootImage. */
async function rootPseudoFile(root: string, special: { path: string; uid: number; gid: number; mode: number }[]): Promise<string> {
  const owners = new Map(special.map((entry) => [entry.path.replace(/^\/+/, ''), entry]));
  const lines: string[] = [];
  for (const path of (await readdir(root, { recursive: true })).sort()) {
    const owner = owners.get(path) ?? { uid: 0, gid: 0, mode: (await lstat(join(root, path))).mode & 0o7777 };
    lines.push(`"${path.replace(/["\\]/g, (char) => `\\${char}`)}" m ${owner.mode.toString(8)} ${owner.uid} ${owner.gid}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * The bare external tools on the inputs the last build's stages used, each timed alone:
 * mksquashfs of the modules and of the root, gzip of the initramfs's cpio, xorriso of the file set;
 * and which of their outputs differ from the stages' own.
 */
async function referenceTimes(workspace: string, scratch: string): Promise<{ times: Record<ReferencePart, Spent>; differing: string[] }> {
  const cache = join(workspace, 'cache');
  const dir = (stage: string) => lastStageDir(cache, stage);
  await rm(scratch, { recursive: true, force: true });
  await mkdir(scratch, { recursive: true });

  const { kernel } = await readStageResult<BootFiles>(await dir('boot-packages'));
  const layout = join(scratch, 'modloop-layout');
  await mkdir(join(layout, 'modules'), { recursive: true });
  await execa('cp', ['-al', join(kernel.modulesDir, kernel.kernelVersion), join(layout, 'modules', kernel.kernelVersion)]);
  if (kernel.firmwareDir) await execa('cp', ['-al', kernel.firmwareDir, join(layout, 'modules', 'firmware')]);
  const modloop = await spent('mksquashfs', [layout, join(scratch, 'modloop'), ...SQUASHFS_COMMON, ...MODLOOP_OPTIONS]);

  const tree = await readStageResult<RootTree>(await dir('rootfs'));
  const pseudo = join(scratch, 'owners.pseudo');
  await writeFile(pseudo, await rootPseudoFile(tree.dir, tree.specialEntries));
  const rootImage = await spent('mksquashfs', [tree.dir, join(scratch, 'rootfs.squashfs'), ...SQUASHFS_COMMON, ...ROOT_IMAGE_OPTIONS, '-pf', pseudo]);

  const initramfsDir = await dir('initramfs');
  const cpio = join(scratch, 'initramfs.cpio');
  await execa('sh', ['-c', `gzip -dc '${join(initramfsDir, 'initramfs')}' > '${cpio}'`]);
  const initramfs = await spent('gzip', [`-${INITRAMFS_GZIP_LEVEL}`, '-n', cpio]);

  const isoDir = await dir('iso');
  const efi = await readStageResult<EfiBoot>(await dir('efi'));
  const apkovlDir = await dir('apkovl');
  const apkovl = (await readdir(apkovlDir)).find((name) => name.endsWith('.apkovl.tar.gz'))!;
  const manifestName = (await readdir(join(workspace, 'out'))).find((name) => name.endsWith('.json'))!;
  const manifest = JSON.parse(await readFile(join(workspace, 'out', manifestName), 'utf8')) as ImageManifest;
  const syslinux = await requireHostFile('syslinuxModules');
  const grafts = [
    [`/${apkovl}`, join(apkovlDir, apkovl)],
    ['/.psyopsOS-release', join(isoDir, 'release')],
    [`/boot/vmlinuz-${IMAGE.kernel}`, kernel.image],
    [`/boot/initramfs-${IMAGE.kernel}`, join(initramfsDir, 'initramfs')],
    [`/boot/modloop-${IMAGE.kernel}`, join(await dir('modloop'), 'modloop')],
    ['/boot/rootfs.squashfs', join(await dir('root-image'), 'rootfs.squashfs')],
    ['/boot/syslinux/isolinux.bin', await requireHostFile('isolinuxBin')],
    ...['ldlinux.c32', 'libcom32.c32', 'libutil.c32'].map((name) => [`/boot/syslinux/${name}`, join(syslinux, name)]),
    ['/boot/syslinux/syslinux.cfg', join(isoDir, 'syslinux.cfg')],
    ['/boot/grub/grub.cfg', join(isoDir, 'grub.cfg')],
    ['/boot/grub/efi.img', efi.efiImage],
    ['/efi/boot/bootx64.efi', efi.efiBinary],
  ]
    .sort(([a], [b]) => (a! < b! ? -1 : 1))
    .map(([isoPath, hostPath]) => `${isoPath}=${hostPath}`);
  const time = `${new Date(EPOCH * 1000).toISOString().replace(/\D/g, '').slice(0, 14)}00`;
  // iso.ts's options: Rock Ridge + Joliet, fixed dates, ISOLINUX with a hybrid MBR, EFI image with GPT.
  const iso = await spent(
    'xorriso',
    [
      '-as',
      'mkisofs',
      '-quiet',
      '-output',
      join(scratch, 'reference.iso'),
      '-full-iso9660-filenames',
      '-joliet',
      '-rational-rock',
      '-sysid',
      'LINUX',
      '-volid',
      manifest.volumeId,
      `--modification-date=${time}`,
      '--set_all_file_dates',
      time,
      '--gpt_disk_guid',
      'modification-date',
      '-isohybrid-mbr',
      await requireHostFile('isohdpfxBin'),
      '-eltorito-boot',
      'boot/syslinux/isolinux.bin',
      '-eltorito-catalog',
      'boot/syslinux/boot.cat',
      '-no-emul-boot',
      '-boot-load-size',
      '4',
      '-boot-info-table',
      '-eltorito-alt-boot',
      '-e',
      'boot/grub/efi.img',
      '-no-emul-boot',
      '-isohybrid-gpt-basdat',
      '-graft-points',
      ...grafts,
    ],
    FIXED_EPOCH,
  );
  // The reference made the same bytes, or it timed other work: name what differs. (Not the
  // initramfs: its cpio is ours by construction, and gzip's deflate is not zlib's.)
  const pairs = [
    ['modloop', join(scratch, 'modloop'), join(await dir('modloop'), 'modloop')],
    ['root image', join(scratch, 'rootfs.squashfs'), join(await dir('root-image'), 'rootfs.squashfs')],
    ['ISO', join(scratch, 'reference.iso'), join(isoDir, manifest.filename)],
  ] as const;
  const differing: string[] = [];
  for (const [what, reference, ours] of pairs) if (!(await readFile(reference)).equals(await readFile(ours))) differing.push(what);
  await rm(scratch, { recursive: true, force: true });
  return { times: { modloop, rootImage, initramfs, iso }, differing };
}

/**
 * build-iso of the embedded default's packages in a fresh workspace: full rebuilds from a warm
 * package cache against the bare external tools on the same inputs (alternating, medians), the
 * rebuild after an overlay-only change, then one BIOS and one UEFI boot in QEMU (TCG) to the
 * postboot line, with the ISO's size and the RAM in use after boot.
 */
export async function benchImagebuild(rounds: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'psyops-bench-imagebuild-'));
  try {
    const hostRepo = join(DEFAULT_HOME, 'host-repo');
    if (!existsSync(join(hostRepo, 'x86_64', 'APKINDEX.tar.gz'))) {
      // The default build prepares the host repository in DEFAULT_HOME.
      await execa('node', [CLI, 'build-iso', '--out', join(dir, 'default-out')], {
        cwd: dir,
        env: { ...FIXED_EPOCH, PSYOPS_DEFAULT_HOME: DEFAULT_HOME },
        timeout: TIMEOUT_MS,
        stdout: 'ignore',
      });
    }
    const workspace = join(dir, 'workspace');
    await execa('node', [CLI, 'init', '--no-password', workspace], { timeout: TIMEOUT_MS, stdout: 'ignore' });
    const configPath = join(workspace, 'psyops.config.json');
    const config = JSON.parse(await readFile(configPath, 'utf8')) as { repositories: unknown; image: Record<string, unknown> };
    config.repositories = [{ url: hostRepo, keys: join(hostRepo, 'keys') }];
    Object.assign(config.image, IMAGE);
    await writeFile(configPath, `${JSON.stringify(config, null, 2)}\n`);
    await spentBuilding(workspace, []); // fills the package cache

    const full: Spent[] = [];
    const stageTimes = new Map<string, number[]>();
    const differs = new Set<string>();
    const reference: Spent[] = [];
    const referenceParts = new Map<ReferencePart, Spent[]>();
    for (let round = 0; round < rounds; round++) {
      const build = await spentBuilding(workspace, ['--rebuild']);
      full.push(build);
      for (const [stage, time] of build.stages) stageTimes.set(stage, [...(stageTimes.get(stage) ?? []), time]);
      const { times, differing } = await referenceTimes(workspace, join(dir, 'reference'));
      const parts = Object.entries(times) as [ReferencePart, Spent][];
      for (const [part, time] of parts) referenceParts.set(part, [...(referenceParts.get(part) ?? []), time]);
      reference.push({ wall: parts.reduce((sum, [, time]) => sum + time.wall, 0), cpu: parts.reduce((sum, [, time]) => sum + time.cpu, 0) });
      for (const what of differing) differs.add(what);
    }
    const overlay: number[] = [];
    for (let round = 0; round < rounds; round++) {
      await writeFile(join(workspace, 'overlay', `bench-${round}.txt`), `overlay change ${round}\n`);
      overlay.push((await spentBuilding(workspace, [])).wall);
    }

    const isoName = (await readdir(join(workspace, 'out'))).find((name) => name.endsWith('.iso'))!;
    const iso = join(workspace, 'out', isoName);
    const boots: string[] = [];
    for (const uefi of [false, true]) {
      const boot = await bootInQemu({ iso, uefi, timeoutMs: BOOT_TIMEOUT_MS, until: /psyopsOS: postboot[^\n]*\n/ });
      const took = seconds(boot.durationMs / 1000);
      const used = /psyopsOS: memory used_kib=(\d+) total_kib=(\d+)/.exec(boot.serial);
      const memory = used ? `RAM used ${mib(Number(used[1]) * 1024)} of ${mib(Number(used[2]) * 1024)}` : 'RAM use not reported';
      boots.push(`${uefi ? 'UEFI' : 'BIOS'} ${boot.reason === 'matched' ? took : `no postboot line (${boot.reason} after ${took})`}, ${memory}`);
    }

    const wallAndCpu = (times: Spent[]) => `${seconds(median(times.map((time) => time.wall)))} (CPU ${seconds(median(times.map((time) => time.cpu)))})`;
    const ratio = (key: keyof Spent) => (median(full.map((time) => time[key])) / median(reference.map((time) => time[key]))).toFixed(2);
    const stages = [...stageTimes].map(([stage, times]) => `${stage} ${median(times).toFixed(1)}`).join(', ');
    const parts = [...referenceParts].map(([part, times]) => `${REFERENCE_PARTS[part]} ${wallAndCpu(times)}`).join(' + ');
    console.log(`imagebuild build-iso of [${IMAGE.world.join(', ')}] + linux-${IMAGE.kernel}, median of ${rounds} round(s), whole processes, wall (CPU) time:`);
    console.log(`imagebuild full build (--rebuild, warm package cache): ${wallAndCpu(full)}; stages' wall s: ${stages}`);
    console.log(
      `imagebuild bare tools on the same inputs: ${wallAndCpu(reference)} = ${parts}; ` +
        (differs.size === 0 ? "outputs byte-identical to the stages'" : `outputs differing from the stages': ${[...differs].join(', ')}`),
    );
    console.log(`imagebuild full build / bare tools: wall ${ratio('wall')}x, CPU ${ratio('cpu')}x (target <= 1.5x)`);
    console.log(`imagebuild rebuild after an overlay-only change: ${seconds(median(overlay))} (target <= 3 s)`);
    console.log(`imagebuild ISO ${mib((await stat(iso)).size)}; boot to postboot under TCG from QEMU start (1 boot each): ${boots.join('; ')}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// Alone: `pnpm --filter @psyops/tooling exec tsx bench/imagebuild.ts` (BENCH_IMAGE_ROUNDS, default 3).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await benchImagebuild(Number(process.env.BENCH_IMAGE_ROUNDS ?? 3));
}
