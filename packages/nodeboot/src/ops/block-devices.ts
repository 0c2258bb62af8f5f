/**
 * The device side of write-bootmedia: the boot disk found as psyopsOS-write-bootmedia always did
 * (an ISO 9660 volume id starting with psyopsos-boot; the whole disk, not the partition of the
 * hybrid ISO), the safety checks (a whole disk known to the kernel, a block device, big enough),
 * and the mounts on it (the boot media at /media/boot, the modloop loop-mounted from it at
 * /.modloop) unmounted before it is overwritten: the root runs from RAM.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { CommandResult } from '../system.js';
import { BootMediaDeviceError } from './errors.js';

export interface BlockDeviceOptions {
  /** /sys/class/block (PSYOPS_SYSFS in the shell script's tests). */
  sysfs?: string;
  /** The volume id prefix of psyopsOS boot media (default `psyopsos-boot`). */
  labelPrefix?: string;
  /** /proc/partitions. */
  partitions?: string;
  /** /proc/self/mountinfo. */
  mountinfo?: string;
}

const defaults = (options: BlockDeviceOptions) => ({
  sysfs: options.sysfs ?? '/sys/class/block',
  labelPrefix: options.labelPrefix ?? 'psyopsos-boot',
  partitions: options.partitions ?? '/proc/partitions',
  mountinfo: options.mountinfo ?? '/proc/self/mountinfo',
});

/** The ISO 9660 volume id (primary volume descriptor at 32 KiB: type 1, "CD001", the id at +40, 32 bytes), or undefined. */
export function isoVolumeId(device: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(device, 'r');
    const descriptor = Buffer.alloc(72);
    if (readSync(fd, descriptor, 0, 72, 0x8000) < 72 || descriptor[0] !== 1 || descriptor.toString('latin1', 1, 6) !== 'CD001') return undefined;
    return descriptor.toString('latin1', 40, 72).trimEnd();
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The whole disk holding `device` when it is a partition (sysfs: a partition's directory sits in its disk's). */
function wholeDisk(device: string, sysfs: string): string {
  const name = basename(device);
  if (!existsSync(join(sysfs, name, 'partition'))) return device;
  return `/dev/${basename(dirname(realpathSync(join(sysfs, name))))}`;
}

/** The device whose volume id starts with the prefix, as a whole disk. */
export function findBootDisk(options: BlockDeviceOptions = {}): string {
  const { sysfs, labelPrefix, partitions } = defaults(options);
  let table = '';
  try {
    table = readFileSync(partitions, 'utf8');
  } catch {
    // no /proc: nothing to find
  }
  for (const [, blocks, name] of table.matchAll(/^\s*\d+\s+\d+\s+(\d+)\s+(\S+)\s*$/gm)) {
    if (blocks === '0' || /^(fd|ram|zram)\d/.test(name!)) continue;
    const device = `/dev/${name}`;
    if (isoVolumeId(device)?.startsWith(labelPrefix)) return wholeDisk(device, sysfs);
  }
  throw new BootMediaDeviceError(`no device with a label starting with "${labelPrefix}"; give DEVICE explicitly`);
}

/**
 * The checks psyopsOS-write-bootmedia always made, in its order: not a partition, a block device,
 * a disk known to the kernel, big enough for `bytes`. Returns the disk's size in bytes.
 */
export function checkWholeDisk(device: string, bytes: number, options: BlockDeviceOptions = {}): number {
  const { sysfs } = defaults(options);
  const name = basename(device);
  if (existsSync(join(sysfs, name, 'partition'))) throw new BootMediaDeviceError(`${device} is a partition; give the whole disk`);
  let isBlock = false;
  try {
    isBlock = statSync(device).isBlockDevice();
  } catch {
    // missing: not a block device
  }
  if (!isBlock) throw new BootMediaDeviceError(`${device} is not a block device`);
  if (!existsSync(join(sysfs, name))) throw new BootMediaDeviceError(`${device} is not a disk known to the kernel`);
  const size = Number(readFileSync(join(sysfs, name, 'size'), 'utf8').trim()) * 512;
  if (bytes > size) throw new BootMediaDeviceError(`the ISO (${bytes} bytes) does not fit on ${device} (${size} bytes)`);
  return size;
}

/** `major:minor` of a disk and each of its partitions (sysfs `dev` files). */
function deviceNumbers(disk: string, sysfs: string): Set<string> {
  const name = basename(disk);
  const numbers = new Set<string>();
  const read = (path: string) => {
    try {
      numbers.add(readFileSync(path, 'utf8').trim());
    } catch {
      // not there
    }
  };
  read(join(sysfs, name, 'dev'));
  let entries: string[] = [];
  try {
    entries = readdirSync(join(sysfs, name));
  } catch {
    // no sysfs entry
  }
  for (const entry of entries) if (existsSync(join(sysfs, name, entry, 'partition'))) read(join(sysfs, name, entry, 'dev'));
  return numbers;
}

interface Mount {
  numbers: string;
  mountpoint: string;
}

/** mountinfo fields: id parent major:minor root mountpoint … (mount points escape spaces as \040). */
function mounts(mountinfo: string): Mount[] {
  let text = '';
  try {
    text = readFileSync(mountinfo, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields.length > 4)
    .map((fields) => ({
      numbers: fields[2]!,
      mountpoint: fields[4]!.replace(/\\(\d{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8))),
    }));
}

/** Loop devices (`major:minor`) whose backing file lies under one of the mount points. */
function loopsBackedBy(mountpoints: string[], sysfs: string): Set<string> {
  const loops = new Set<string>();
  let names: string[] = [];
  try {
    names = readdirSync(sysfs).filter((name) => /^loop\d+$/.test(name));
  } catch {
    return loops;
  }
  for (const name of names) {
    try {
      const backing = readFileSync(join(sysfs, name, 'loop', 'backing_file'), 'utf8').trim();
      if (mountpoints.some((mp) => backing === mp || backing.startsWith(mp === '/' ? '/' : `${mp}/`)))
        loops.add(readFileSync(join(sysfs, name, 'dev'), 'utf8').trim());
    } catch {
      // an unused loop device has no backing file
    }
  }
  return loops;
}

/**
 * The mount points to release before `disk` is overwritten, in order: loop mounts whose file is
 * on it first (the modloop at /.modloop), then its own (the media at /media/boot), deepest first.
 */
export function mountsOn(disk: string, options: BlockDeviceOptions = {}): string[] {
  const { sysfs, mountinfo } = defaults(options);
  const all = mounts(mountinfo);
  const numbers = deviceNumbers(disk, sysfs);
  const direct = all.filter((m) => numbers.has(m.numbers)).map((m) => m.mountpoint);
  const loops = loopsBackedBy(direct, sysfs);
  const viaLoop = all.filter((m) => loops.has(m.numbers)).map((m) => m.mountpoint);
  const deepestFirst = (a: string, b: string) => b.length - a.length;
  return [...new Set([...viaLoop.sort(deepestFirst), ...direct.sort(deepestFirst)])];
}

export type Runner = (command: string, args: readonly string[], timeoutMs: number) => Promise<CommandResult>;

/** Unmounts each mount point, lazily (`umount -l`) when it is busy; returns what was done, one line each. */
export async function releaseMounts(mountpoints: string[], run: Runner): Promise<string[]> {
  const done: string[] = [];
  for (const mountpoint of mountpoints) {
    if ((await run('umount', [mountpoint], 30_000)).exitCode === 0) {
      done.push(`unmounted ${mountpoint}`);
      continue;
    }
    const lazy = await run('umount', ['-l', mountpoint], 30_000);
    if (lazy.exitCode !== 0) throw new BootMediaDeviceError(`cannot unmount ${mountpoint}: ${lazy.stderr.trim().split('\n').at(-1) ?? ''}`);
    done.push(`unmounted ${mountpoint} (lazily: busy)`);
  }
  return done;
}
