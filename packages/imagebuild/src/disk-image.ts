/**
 * The A/B disk image and the update artifact. The disk: GPT with an EFI system partition (GRUB, its
 * environment block), `psyops-secret`, `psyops-state` and two OS slots `psyopsOS-A` / `psyopsOS-B`
 * holding the same slot content. The update tar: that slot content, for a running node to write
 * into its other slot. Everything is made in plain files (mkfs.ext4 -d, mtools, sfdisk) and placed
 * at its offset: no root, no loop device. UUIDs, dates and the hash seed come from the build's
 * epoch, so the same inputs give the same bytes.
 */
import { createHash } from 'node:crypto';
import { copyFile, link, mkdir, open, readdir, stat, utimes, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileAccessError, formatGrubEnv, runTool, sha256File } from '@psyops/core';
import { tarHeader, tarPadding } from '@psyops/apkpkg/format';
import { signBytes, type SecretKey } from '@psyops/signing';
import { GRUB_EFI_MODULES } from './bootloader.js';
import { ImageConfigError } from './errors.js';
import { runStage, type StageCache, type StageResult } from './stage.js';
import { requireHostFile, requireTools } from './tools.js';

const MiB = 1024 * 1024;
const ESP_TYPE = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';
const LINUX_DATA_TYPE = '0FC63DAF-8483-4772-8E79-3D69D8477DE4';
export const ESP_LABEL = 'PSYOPS-ESP';
export const SLOT_LABELS = { A: 'psyopsOS-A', B: 'psyopsOS-B' } as const;
export const SLOT_DESCRIPTION = 'psyopsOS-slot.json';
const ESP_MIB = 32;
const VOLUME_MIB = 16;
/** Below this a slot cannot hold even a minimal image. */
const MIN_SLOT_MIB = 64;

export interface SlotSource {
  release: string;
  arch: string;
  kernelVersion: string;
  alpine: string;
  kernelFlavor: string;
  apkovl: string;
  kernelImage: string;
  initramfs: string;
  modloop: string;
  rootImage: string;
  /** This release's kernel command line: GRUB reads it from the slot, so an update brings its own. */
  cmdline: string;
}

export interface SlotManifest {
  format: 'psyops-slot/1';
  version: string;
  arch: string;
  kernel: string;
  alpine: string;
  kernelFlavor: string;
  /** Every other file of the slot, sorted by path. */
  files: { path: string; size: number; sha256: string }[];
}

export interface DiskPartition {
  /** GPT partition name. */
  name: string;
  /** File system label. */
  label: string;
  /** Byte offset and size on the disk. */
  start: number;
  size: number;
  type: string;
}

const byPath = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** A UUID made from the build's epoch and a name: the same build gives the same one. */
function stableUuid(mtime: number, name: string): string {
  const hex = createHash('sha256').update(`psyopsOS ${mtime} ${name}`).digest('hex');
  // Version 4 layout (random-looking), so tools that check the variant accept it.
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** A hard link where possible (same file system), else a copy. */
async function place(source: string, target: string): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  await link(source, target).catch(() => copyFile(source, target));
}

/**
 * Lays out the slot content in `dir`: the apkovl, `.psyopsOS-release`, `boot/…`, then
 * psyopsOS-slot.json (every other file's size and sha256) and its signature.
 */
export async function writeSlotTree(dir: string, source: SlotSource, secretKey: SecretKey, mtime: number): Promise<SlotManifest> {
  const flavor = source.kernelFlavor;
  const files: [string, string][] = [
    [basename(source.apkovl), source.apkovl],
    [`boot/vmlinuz-${flavor}`, source.kernelImage],
    [`boot/initramfs-${flavor}`, source.initramfs],
    [`boot/modloop-${flavor}`, source.modloop],
    ['boot/rootfs.squashfs', source.rootImage],
  ];
  for (const [path, from] of files) await place(from, join(dir, path));
  await writeFile(join(dir, '.psyopsOS-release'), `${source.release} ${source.arch}\n`);
  await writeFile(join(dir, SLOT_CMDLINE), `set psyops_cmdline="${checkedCmdline(source.cmdline)}"\n`);
  const paths = [...files.map(([path]) => path), '.psyopsOS-release', SLOT_CMDLINE].sort(byPath);
  const manifest: SlotManifest = {
    format: 'psyops-slot/1',
    version: source.release,
    arch: source.arch,
    kernel: source.kernelVersion,
    alpine: source.alpine,
    kernelFlavor: flavor,
    files: [],
  };
  for (const path of paths) manifest.files.push({ path, size: (await stat(join(dir, path))).size, sha256: await sha256File(join(dir, path)) });
  const text = `${JSON.stringify(manifest, null, 2)}\n`;
  await writeFile(join(dir, SLOT_DESCRIPTION), text);
  await writeFile(
    join(dir, `${SLOT_DESCRIPTION}.minisig`),
    signBytes(Buffer.from(text), secretKey, { trustedComment: `file:${SLOT_DESCRIPTION} version=${source.release}` }),
  );
  for (const path of [...paths, SLOT_DESCRIPTION, `${SLOT_DESCRIPTION}.minisig`, 'boot', '.']) await utimes(join(dir, path), mtime, mtime);
  return manifest;
}

/** Every path of the slot tree in the update tar's order: the description, its signature, the rest by path. */
function tarOrder(manifest: SlotManifest): string[] {
  return [SLOT_DESCRIPTION, `${SLOT_DESCRIPTION}.minisig`, ...manifest.files.map((file) => file.path)];
}

/** The update tar: POSIX ustar, regular files only, 0644 root:root, dated `mtime`, in tarOrder. */
export async function writeUpdateTar(slotDir: string, manifest: SlotManifest, out: string, mtime: number): Promise<void> {
  const handle = await open(out, 'w');
  try {
    for (const path of tarOrder(manifest)) {
      const file = join(slotDir, path);
      const { size } = await stat(file);
      await handle.write(tarHeader({ name: path, mode: 0o644, size, mtime, type: 'file', style: 'posix', uid: 0, gid: 0 }));
      const input = await open(file, 'r');
      try {
        const buffer = Buffer.alloc(4 * MiB);
        for (let position = 0; position < size; ) {
          const { bytesRead } = await input.read(buffer, 0, buffer.length, position);
          if (bytesRead === 0) throw new ImageConfigError(`${file} shrank while it was archived`);
          await handle.write(buffer, 0, bytesRead);
          position += bytesRead;
        }
      } finally {
        await input.close();
      }
      await handle.write(tarPadding(size));
    }
    // The end of the archive: two zero blocks.
    await handle.write(Buffer.alloc(1024));
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * An ext4 file system of `sizeMiB` labelled `label` holding `content` (or nothing). mkfs.ext4
 * copies the host's ctime and atime of each file, which no build controls: debugfs sets them to
 * `mtime` afterwards, as E2FSPROGS_FAKE_TIME does for the file system's own dates.
 */
async function ext4Image(out: string, label: string, sizeMiB: number, mtime: number, content?: string): Promise<void> {
  const tools = await requireTools(['mkfs.ext4', 'debugfs']);
  const uuid = stableUuid(mtime, label);
  const env = { E2FSPROGS_FAKE_TIME: String(mtime) };
  await runTool(
    tools['mkfs.ext4'],
    ['-q', '-F', '-t', 'ext4', '-L', label, '-U', uuid, '-E', `hash_seed=${uuid},root_owner=0:0`, ...(content ? ['-d', content] : []), out, `${sizeMiB}M`],
    { env, timeoutMs: 300_000 },
  );
  const paths = ['/', '/lost+found', ...(content ? await treePaths(content) : [])];
  const script = paths.flatMap((path) => [`sif "${path}" ctime @${mtime}`, `sif "${path}" atime @${mtime}`]).join('\n');
  await runTool(tools.debugfs, ['-w', '-f', '-', out], { env, input: `${script}\n`, timeoutMs: 120_000 });
}

/** Every path below `root`, as `/a/b`. */
async function treePaths(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true });
  return entries.map((entry) => `/${entry}`).sort(byPath);
}

export interface DiskBootOptions {
  kernelFlavor: string;
  /** The kernel command line of a slot without its own SLOT_CMDLINE (the disk's first release's). */
  cmdline: string;
}

/** The slot's GRUB snippet that sets `psyops_cmdline`, this release's kernel command line. */
export const SLOT_CMDLINE = 'boot/cmdline.cfg';

/** A command line GRUB can take inside double quotes, unchanged. */
function checkedCmdline(cmdline: string): string {
  if (/[\n\r"$;\\]/.test(cmdline))
    throw new ImageConfigError(`kernel command line may not contain quotes, $, ;, backslashes or line breaks: ${JSON.stringify(cmdline)}`);
  return cmdline;
}

/**
 * GRUB's configuration on the ESP: read the environment block, then boot the good slot; a slot to
 * try once (`psyops_try`, set by the node's update) is booted once, recorded as `psyops_trying`
 * first; a `psyops_trying` still set at the next boot means that trial never got marked good, so
 * the good slot boots and is told what was abandoned. `panic=10` makes a kernel panic a reboot.
 * The kernel command line comes from the booted slot (SLOT_CMDLINE): each release brings its own.
 */
export function diskGrubConfig(options: DiskBootOptions): string {
  checkedCmdline(options.cmdline);
  if (!/^[A-Za-z0-9._-]+$/.test(options.kernelFlavor)) throw new ImageConfigError(`bad kernel flavor ${JSON.stringify(options.kernelFlavor)}`);
  return `# psyopsOS A/B boot (generated by @psyops/imagebuild)
set timeout=0
set psyops_env=($root)/boot/grub/grubenv
load_env --file $psyops_env psyops_good psyops_try psyops_trying
if [ "$psyops_good" != A -a "$psyops_good" != B ]; then set psyops_good=A; fi
set psyops_extra=
if [ "$psyops_trying" = A -o "$psyops_trying" = B ]; then
	set psyops_slot=$psyops_good
	set psyops_extra="psyopsos.rolled_back_from=$psyops_trying"
	set psyops_trying=
	save_env --file $psyops_env psyops_trying
elif [ "$psyops_try" = A -o "$psyops_try" = B ]; then
	set psyops_slot=$psyops_try
	set psyops_trying=$psyops_try
	set psyops_try=
	save_env --file $psyops_env psyops_try psyops_trying
	set psyops_extra=psyopsos.trial=1
else
	set psyops_slot=$psyops_good
fi
echo "psyopsOS: booting slot $psyops_slot $psyops_extra"
search --no-floppy --set=root --label psyopsOS-$psyops_slot
set psyops_cmdline="${options.cmdline}"
if [ -f /${SLOT_CMDLINE} ]; then source /${SLOT_CMDLINE}; fi
linux /boot/vmlinuz-${options.kernelFlavor} $psyops_cmdline psyopsos.slot=psyopsOS-$psyops_slot panic=10 $psyops_extra
initrd /boot/initramfs-${options.kernelFlavor}
boot
`;
}

/** The variables GRUB and the node share, as the build leaves them: slot A good, nothing to try. */
export const INITIAL_GRUBENV = { psyops_good: 'A', psyops_try: '', psyops_trying: '' } as const;

/** The FAT ESP: GRUB at the removable-media path (/EFI/BOOT/BOOTX64.EFI), grub.cfg and grubenv. */
async function espImage(work: string, out: string, options: DiskBootOptions, mtime: number): Promise<void> {
  const tools = await requireTools(['grub-mkimage', 'mformat', 'mcopy']);
  const grubModules = await requireHostFile('grubEfiModules');
  const tree = join(work, 'esp');
  await mkdir(join(tree, 'EFI/BOOT'), { recursive: true });
  await mkdir(join(tree, 'boot/grub'), { recursive: true });
  // GRUB's rescue parser runs the early config (no `if`): it finds the ESP, and normal reads grub.cfg from it.
  const early = join(work, 'grub-early.cfg');
  await writeFile(early, `search --no-floppy --set=root --label ${ESP_LABEL}\nset prefix=($root)/boot/grub\n`);
  const modules = [...new Set([...GRUB_EFI_MODULES, 'ext2', 'loadenv', 'search_fs_file'])];
  await runTool(tools['grub-mkimage'], [
    '--directory',
    grubModules,
    '--config',
    early,
    '--prefix',
    '/boot/grub',
    '--output',
    join(tree, 'EFI/BOOT/BOOTX64.EFI'),
    '--format',
    'x86_64-efi',
    '--compression',
    'xz',
    ...modules,
  ]);
  await writeFile(join(tree, 'boot/grub/grub.cfg'), diskGrubConfig(options));
  // Exactly GRUB's 1024 bytes: save_env rewrites the file's sectors in place and refuses another size.
  await writeFile(join(tree, 'boot/grub/grubenv'), formatGrubEnv(INITIAL_GRUBENV));
  for (const path of ['EFI/BOOT/BOOTX64.EFI', 'boot/grub/grub.cfg', 'boot/grub/grubenv', 'EFI/BOOT', 'boot/grub', 'EFI', 'boot']) {
    await utimes(join(tree, path), mtime, mtime);
  }
  const handle = await open(out, 'w');
  await handle.truncate(ESP_MIB * MiB);
  await handle.close();
  const env = { SOURCE_DATE_EPOCH: String(mtime) };
  // Serial from the epoch (-N): FAT's volume id is the only other varying byte.
  const serial = stableUuid(mtime, ESP_LABEL).slice(0, 8);
  await runTool(tools.mformat, ['-i', out, '-v', ESP_LABEL, '-N', serial, '::'], { env });
  await runTool(tools.mcopy, ['-i', out, '-s', '-m', join(tree, 'EFI'), join(tree, 'boot'), '::'], { env });
}

/** Copies `source` into `disk` at `offset`, skipping all-zero blocks (the disk file stays sparse). */
export async function writeAt(disk: string, offset: number, source: string): Promise<void> {
  const input = await open(source, 'r');
  const output = await open(disk, 'r+');
  try {
    const buffer = Buffer.alloc(MiB);
    for (let position = 0; ; position += buffer.length) {
      const { bytesRead } = await input.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) break;
      const chunk = buffer.subarray(0, bytesRead);
      if (chunk.every((byte) => byte === 0)) continue;
      await output.write(chunk, 0, bytesRead, offset + position);
    }
    await output.sync();
  } finally {
    await input.close();
    await output.close();
  }
}

/** Writes the partition table of `partitions` into `disk` (sized already) with sfdisk. */
async function partitionDisk(disk: string, partitions: readonly DiskPartition[], mtime: number): Promise<void> {
  const { sfdisk } = await requireTools(['sfdisk']);
  const lines = ['label: gpt', `label-id: ${stableUuid(mtime, 'disk')}`, 'unit: sectors', 'first-lba: 2048'];
  for (const part of partitions) {
    lines.push(`start=${part.start / 512}, size=${part.size / 512}, type=${part.type}, uuid=${stableUuid(mtime, `part ${part.name}`)}, name="${part.name}"`);
  }
  await runTool(sfdisk, ['--quiet', '--no-reread', '--no-tell-kernel', disk], { input: `${lines.join('\n')}\n`, timeoutMs: 60_000 });
}

/** The partitions in order, each starting at a MiB boundary. */
export function diskLayout(slotMiB: number): DiskPartition[] {
  const sizes: [string, string, number, string][] = [
    ['psyops-esp', ESP_LABEL, ESP_MIB, ESP_TYPE],
    ['psyops-secret', 'psyops-secret', VOLUME_MIB, LINUX_DATA_TYPE],
    ['psyops-state', 'psyops-state', VOLUME_MIB, LINUX_DATA_TYPE],
    [SLOT_LABELS.A, SLOT_LABELS.A, slotMiB, LINUX_DATA_TYPE],
    [SLOT_LABELS.B, SLOT_LABELS.B, slotMiB, LINUX_DATA_TYPE],
  ];
  let startMiB = 1;
  return sizes.map(([name, label, mib, type]) => {
    const part = { name, label, start: startMiB * MiB, size: mib * MiB, type };
    startMiB += mib;
    return part;
  });
}

/** The slot size when none is asked for: twice the content (room for bigger releases), at least 64 MiB. */
export function defaultSlotMiB(contentBytes: number): number {
  return Math.max(MIN_SLOT_MIB, Math.ceil((contentBytes * 2) / MiB));
}

export interface DiskStageOptions extends DiskBootOptions {
  slot: SlotSource;
  /** Default: defaultSlotMiB of the slot content. */
  slotMiB?: number;
  secretKey: SecretKey;
  /** The key's id stands for it in the stage inputs (a new key signs a new slot description). */
  keyId: string;
  mtime: number;
}

export interface DiskStageResult {
  image: string;
  tar: string;
  slotManifest: SlotManifest;
  partitions: DiskPartition[];
}

/** The disk stage: `<stage>/disk.img` (empty secret volume) and `<stage>/slot.tar`. */
export function diskStage(cache: StageCache, options: DiskStageOptions): Promise<StageResult<DiskStageResult>> {
  const { secretKey: _key, ...inputs } = options;
  return runStage(cache, 'disk', inputs, async (dir) => {
    const slotDir = join(dir, 'slot');
    const slotManifest = await writeSlotTree(slotDir, options.slot, options.secretKey, options.mtime);
    const tar = join(dir, 'slot.tar');
    await writeUpdateTar(slotDir, slotManifest, tar, options.mtime);
    const contentBytes = slotManifest.files.reduce((sum, file) => sum + file.size, 0);
    const slotMiB = options.slotMiB ?? defaultSlotMiB(contentBytes);
    // The file system's own blocks (inode tables, journal) need room beside the content.
    const needed = Math.ceil((contentBytes * 1.1) / MiB) + 8;
    if (slotMiB < needed)
      throw new ImageConfigError(
        `--slot-size ${slotMiB} MiB cannot hold this release's slot content (${Math.ceil(contentBytes / MiB)} MiB): give at least ${needed}`,
      );
    const partitions = diskLayout(slotMiB);
    const parts = join(dir, 'parts');
    await mkdir(parts);
    const empty = join(parts, 'empty');
    await mkdir(empty);
    const images: string[] = [];
    for (const part of partitions) {
      const image = join(parts, `${part.name}.img`);
      if (part.name === 'psyops-esp') await espImage(parts, image, options, options.mtime);
      else await ext4Image(image, part.label, part.size / MiB, options.mtime, part.label.startsWith('psyopsOS-') ? slotDir : undefined);
      images.push(image);
    }
    const image = join(dir, 'disk.img');
    const last = partitions.at(-1)!;
    const handle = await open(image, 'w');
    // 1 MiB after the last partition holds GPT's backup table.
    await handle.truncate(last.start + last.size + MiB);
    await handle.close();
    await partitionDisk(image, partitions, options.mtime);
    for (const [index, part] of partitions.entries()) await writeAt(image, part.start, images[index]!);
    return { image, tar, slotManifest, partitions };
  });
}

/** The node a secret volume belongs to: its `nodename` file, read with debugfs (no mount). */
export async function secretVolumeNodeName(secretImage: string): Promise<string> {
  await checkSecretVolume(secretImage);
  const { debugfs } = await requireTools(['debugfs']);
  const text = await runTool(debugfs, ['-R', 'cat /nodename', secretImage], { timeoutMs: 30_000 });
  const name = text.split('\n')[0]!.trim();
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) throw new ImageConfigError(`${secretImage} has no valid nodename file: not a psyops secret volume`);
  return name;
}

/** Refuses what is not an ext4 image labelled psyops-secret. */
async function checkSecretVolume(secretImage: string): Promise<void> {
  const head = Buffer.alloc(2048);
  const handle = await open(secretImage, 'r').catch((error: unknown) => Promise.reject(fileAccessError(error, secretImage, 'secret volume')));
  try {
    await handle.read(head, 0, head.length, 0);
  } finally {
    await handle.close();
  }
  // ext4's superblock at 1024: magic 0xEF53 at 56, the label at 120.
  const label = head
    .subarray(1024 + 120, 1024 + 136)
    .toString('latin1')
    .replace(/\0.*$/s, '');
  if (head.readUInt16LE(1024 + 56) !== 0xef53 || label !== 'psyops-secret') {
    throw new ImageConfigError(`${secretImage} is not an ext4 image labelled psyops-secret (psyops node create --out writes one)`);
  }
}

/**
 * Writes a node's secret volume (an ext4 image labelled psyops-secret) into a copy of the disk, at
 * the secret partition; the image must fit the partition.
 */
export async function placeSecretVolume(disk: string, partitions: readonly DiskPartition[], secretImage: string): Promise<void> {
  const part = partitions.find((candidate) => candidate.name === 'psyops-secret')!;
  const { size } = await stat(secretImage);
  if (size > part.size) throw new ImageConfigError(`the secret volume ${secretImage} (${size} bytes) does not fit its ${part.size / MiB} MiB partition`);
  await checkSecretVolume(secretImage);
  // The whole partition: the empty volume's blocks must not show through a smaller image.
  const zero = await open(disk, 'r+');
  try {
    const block = Buffer.alloc(MiB);
    for (let at = 0; at < part.size; at += MiB) await zero.write(block, 0, MiB, part.start + at);
  } finally {
    await zero.close();
  }
  await writeAt(disk, part.start, secretImage);
}
