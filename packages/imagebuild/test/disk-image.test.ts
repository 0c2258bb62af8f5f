/**
 * The A/B disk and the update tar, checked with the tools that read them: sfdisk for the partition
 * table, mtools and grub-editenv for the ESP, blkid and debugfs for the ext4 file systems, GNU tar
 * for the archive, minisign for the slot description's signature. (Booting it: the e2e tests.)
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatGrubEnv } from '@psyops/core';
import { encodePublicKey, generateKeyPair, publicKeyOf } from '@psyops/signing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  diskGrubConfig,
  diskStage,
  INITIAL_GRUBENV,
  placeSecretVolume,
  secretVolumeNodeName,
  type DiskStageResult,
  type SlotSource,
} from '../src/disk-image.js';

const MTIME = 1_764_028_800;
const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'psyops-disk-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const key = generateKeyPair();
const run = (program: string, args: string[], input?: string) => execFileSync(program, args, { encoding: 'utf8', ...(input !== undefined ? { input } : {}) });

/** Stand-ins for the boot files: the disk only places them, their content does not matter here. */
function sourceFiles(): SlotSource {
  const files = join(dir, 'sources');
  mkdirSync(files, { recursive: true });
  const make = (name: string, size: number) => {
    const path = join(files, name);
    writeFileSync(
      path,
      createHash('sha256')
        .update(name)
        .digest()
        .toString('hex')
        .repeat(Math.ceil(size / 64))
        .slice(0, size),
    );
    return path;
  };
  return {
    release: 'r7',
    arch: 'x86_64',
    kernelVersion: '6.1.0-57-amd64',
    alpine: 'none',
    kernelFlavor: 'debian',
    apkovl: make('node.apkovl.tar.gz', 2000),
    kernelImage: make('vmlinuz', 3 * MiB),
    initramfs: make('initramfs', 2 * MiB),
    modloop: make('modloop', 5 * MiB),
    rootImage: make('rootfs.squashfs', 7 * MiB),
    cmdline: 'quiet no_timer_check console=ttyS0,115200 psyops.release_word=r7',
  };
}

/** `bytes` bytes of `file` from `offset`, as their own file. */
function extract(file: string, offset: number, bytes: number, out: string): string {
  writeFileSync(out, readFileSync(file).subarray(offset, offset + bytes));
  return out;
}

describe('build-disk: the A/B disk image and the update tar', () => {
  let first: DiskStageResult;
  let second: DiskStageResult;
  const slot = sourceFiles();

  beforeAll(async () => {
    const options = { slot, kernelFlavor: 'debian', cmdline: 'quiet no_timer_check console=ttyS0,115200', mtime: MTIME, secretKey: key, keyId: 'test' };
    first = (await diskStage({ dir: join(dir, 'cache-1') }, options)).value;
    second = (await diskStage({ dir: join(dir, 'cache-2') }, options)).value;
  }, 180_000);

  it('is byte-reproducible: two builds of the same inputs give the same disk and tar', () => {
    const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
    expect(sha(second.image)).toBe(sha(first.image));
    expect(sha(second.tar)).toBe(sha(first.tar));
  });

  it('has the GPT layout: ESP, secret, state, A, B, each on a MiB boundary, named and typed', () => {
    const table = JSON.parse(run('sfdisk', ['--json', first.image])).partitiontable;
    expect(table.label).toBe('gpt');
    expect(table.partitions.map((p: { name: string; type: string }) => [p.name, p.type])).toEqual([
      ['psyops-esp', 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B'],
      ['psyops-secret', '0FC63DAF-8483-4772-8E79-3D69D8477DE4'],
      ['psyops-state', '0FC63DAF-8483-4772-8E79-3D69D8477DE4'],
      ['psyopsOS-A', '0FC63DAF-8483-4772-8E79-3D69D8477DE4'],
      ['psyopsOS-B', '0FC63DAF-8483-4772-8E79-3D69D8477DE4'],
    ]);
    for (const [index, part] of table.partitions.entries()) {
      expect(part.start % 2048).toBe(0);
      expect(part.start * 512).toBe(first.partitions[index]!.start);
      expect(part.size * 512).toBe(first.partitions[index]!.size);
    }
    // Slots of twice the content, at least 64 MiB.
    expect(first.partitions[3]!.size).toBe(64 * MiB);
  });

  it('the ESP holds GRUB, a grub.cfg GRUB parses and the initial environment block grub-editenv reads', () => {
    const esp = `${first.image}@@${first.partitions[0]!.start}`;
    expect(run('mdir', ['-b', '-i', esp, '::/EFI/BOOT'])).toMatch(/BOOTX64\.EFI/);
    expect(run('minfo', ['-i', esp, '::'])).toMatch(/disk label="PSYOPS-ESP +"/);
    const env = join(dir, 'grubenv');
    run('mcopy', ['-o', '-i', esp, '::/boot/grub/grubenv', env]);
    expect(readFileSync(env).equals(formatGrubEnv(INITIAL_GRUBENV))).toBe(true);
    expect(run('grub-editenv', [env, 'list'])).toBe('psyops_good=A\npsyops_try=\npsyops_trying=\n');
    const cfg = join(dir, 'grub.cfg');
    run('mcopy', ['-o', '-i', esp, '::/boot/grub/grub.cfg', cfg]);
    run('grub-script-check', [cfg]);
    // The slot's own command line replaces the ESP's: an update brings its release's.
    expect(readFileSync(cfg, 'utf8')).toContain(
      'if [ -f /boot/cmdline.cfg ]; then source /boot/cmdline.cfg; fi\nlinux /boot/vmlinuz-debian $psyops_cmdline psyopsos.slot=psyopsOS-$psyops_slot panic=10 $psyops_extra',
    );
  });

  it('both slots are ext4 file systems labelled by slot, holding the slot content; the empty volumes are labelled', () => {
    const labels = first.partitions.map((part, index) => {
      const image = extract(first.image, part.start, part.size, join(dir, `part-${index}.img`));
      return run('blkid', ['-p', '-s', 'LABEL', '-s', 'TYPE', '-o', 'export', image])
        .match(/LABEL=(\S+)\nTYPE=(\S+)/)!
        .slice(1);
    });
    expect(labels).toEqual([
      ['PSYOPS-ESP', 'vfat'],
      ['psyops-secret', 'ext4'],
      ['psyops-state', 'ext4'],
      ['psyopsOS-A', 'ext4'],
      ['psyopsOS-B', 'ext4'],
    ]);
    const slotA = join(dir, 'part-3.img');
    expect(run('debugfs', ['-R', 'cat /.psyopsOS-release', slotA])).toBe('r7 x86_64\n');
    expect(run('debugfs', ['-R', 'cat /boot/cmdline.cfg', slotA])).toBe(`set psyops_cmdline="${slot.cmdline}"\n`);
    const described = JSON.parse(run('debugfs', ['-R', 'cat /psyopsOS-slot.json', slotA]));
    expect(described).toEqual(first.slotManifest);
    expect(described.files.map((file: { path: string }) => file.path)).toEqual([
      '.psyopsOS-release',
      'boot/cmdline.cfg',
      'boot/initramfs-debian',
      'boot/modloop-debian',
      'boot/rootfs.squashfs',
      'boot/vmlinuz-debian',
      'node.apkovl.tar.gz',
    ]);
    const kernel = described.files.find((file: { path: string }) => file.path === 'boot/vmlinuz-debian');
    expect(kernel.sha256).toBe(createHash('sha256').update(readFileSync(slot.kernelImage)).digest('hex'));
  });

  it('the update tar is ustar, root-owned 0644 files, the description and its signature first, minisign verifies the description', () => {
    const listing = run('tar', ['--numeric-owner', '-tvf', first.tar]).trim().split('\n');
    expect(listing.map((line) => line.split(/\s+/).at(-1))).toEqual([
      'psyopsOS-slot.json',
      'psyopsOS-slot.json.minisig',
      '.psyopsOS-release',
      'boot/cmdline.cfg',
      'boot/initramfs-debian',
      'boot/modloop-debian',
      'boot/rootfs.squashfs',
      'boot/vmlinuz-debian',
      'node.apkovl.tar.gz',
    ]);
    for (const line of listing) expect(line).toMatch(/^-rw-r--r-- 0\/0 .* 2025-11-25 00:00 /);
    expect(readFileSync(first.tar).subarray(257, 263).toString('latin1')).toBe('ustar\0');
    const unpacked = join(dir, 'unpacked');
    mkdirSync(unpacked);
    run('tar', ['-xf', first.tar, '-C', unpacked]);
    const pub = join(dir, 'build.pub');
    writeFileSync(pub, encodePublicKey(publicKeyOf(key)));
    expect(run('minisign', ['-V', '-p', pub, '-m', join(unpacked, 'psyopsOS-slot.json')])).toMatch(/Trusted comment: file:psyopsOS-slot\.json version=r7/);
  });

  it("takes a node's secret volume into its partition, and refuses what is not one", async () => {
    const content = join(dir, 'secret-content');
    mkdirSync(content);
    writeFileSync(join(content, 'nodename'), 'node-7\n');
    const secret = join(dir, 'secret.img');
    run('mkfs.ext4', ['-q', '-F', '-L', 'psyops-secret', '-d', content, secret, '8M']);
    expect(await secretVolumeNodeName(secret)).toBe('node-7');
    const disk = join(dir, 'node.img');
    writeFileSync(disk, readFileSync(first.image));
    await placeSecretVolume(disk, first.partitions, secret);
    const part = first.partitions[1]!;
    const placed = extract(disk, part.start, part.size, join(dir, 'placed.img'));
    expect(run('debugfs', ['-R', 'cat /nodename', placed])).toBe('node-7\n');
    const other = join(dir, 'other.img');
    run('mkfs.ext4', ['-q', '-F', '-L', 'psyops-state', other, '8M']);
    await expect(placeSecretVolume(disk, first.partitions, other)).rejects.toThrow(/not an ext4 image labelled psyops-secret/);
    await expect(secretVolumeNodeName(join(dir, 'missing.img'))).rejects.toThrow(/missing\.img/);
  });

  it('refuses a command line GRUB would read differently', () => {
    expect(() => diskGrubConfig({ kernelFlavor: 'debian', cmdline: 'console=ttyS0 $evil' })).toThrow(/may not contain/);
    expect(() => diskGrubConfig({ kernelFlavor: 'de bian', cmdline: 'quiet' })).toThrow(/bad kernel flavor/);
  });
});
