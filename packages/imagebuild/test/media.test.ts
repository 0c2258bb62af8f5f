/** Each boot-media stage checked with the real tools (cpio, unsquashfs, mtools, xorriso). */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync, zstdCompressSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootLoaderConfigs, buildEfiBoot, volumeIdFor } from '../src/bootloader.js';
import { newcArchive } from '../src/cpio.js';
import { ToolFailedError } from '@psyops/core';
import { ImageConfigError } from '../src/errors.js';
import { buildInitramfs, resolveEarlyModules } from '../src/initramfs.js';
import { writeIso } from '../src/iso.js';
import { buildModloop, buildRootImage } from '../src/squashfs.js';
import { buildTestMedia, hostKernelVersion } from './media-fixture.js';

const MTIME = 1_764_028_800;

let dir: string;
let kernelVersion: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'psyops-media-test-'));
  kernelVersion = await hostKernelVersion();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function fresh(name: string): string {
  const path = join(dir, name);
  mkdirSync(path, { recursive: true });
  return path;
}

/** `cpio -t -v` of a gzip'ed newc archive, as GNU cpio lists it. */
function cpioList(gzipped: Buffer): string[] {
  return execFileSync('cpio', ['-t', '-v', '--quiet'], { input: gunzipSync(gzipped), env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' } })
    .toString()
    .trim()
    .split('\n');
}

/** A kernel module tree with only the FAT driver (vfat depends on fat), optionally compressed as Alpine ships them, without modules.dep. */
function fatModules(name: string, compression: boolean | 'gz' | 'xz' | 'zst'): string {
  const suffix = compression === true ? 'gz' : compression;
  const modulesDir = fresh(name);
  const source = join('/lib/modules', kernelVersion);
  const target = join(modulesDir, kernelVersion);
  mkdirSync(join(target, 'kernel/fs/fat'), { recursive: true });
  for (const module of ['fat.ko', 'vfat.ko']) {
    const data = readFileSync(join(source, 'kernel/fs/fat', module));
    const file = join(target, 'kernel/fs/fat', suffix ? `${module}.${suffix}` : module);
    if (suffix === 'gz') writeFileSync(file, gzipSync(data));
    else if (suffix === 'zst') writeFileSync(file, zstdCompressSync(data));
    else if (suffix === 'xz') writeFileSync(file, execFileSync('xz', ['-c', '--check=crc32'], { input: data }));
    else writeFileSync(file, data);
  }
  copyFileSync(join(source, 'modules.builtin'), join(target, 'modules.builtin'));
  copyFileSync(join(source, 'modules.order'), join(target, 'modules.order'));
  return modulesDir;
}

describe('volume id', () => {
  it('is psyopsos-boot <release> <arch>, at most 32 characters', () => {
    expect(volumeIdFor('251125', 'x86_64')).toBe('psyopsos-boot 251125 x86_64');
    expect(volumeIdFor('3.18.2-r100', 'x86_64')).toHaveLength(32);
    expect(() => volumeIdFor('3.18.2-r1000', 'x86_64')).toThrow(ImageConfigError);
    expect(() => volumeIdFor('3.18.2-r1000', 'x86_64')).toThrow(/33 characters/);
    expect(() => volumeIdFor('a"b', 'x86_64')).toThrow(ImageConfigError);
  });

  it('too long: writeIso fails before xorriso runs and leaves no file', async () => {
    const out = join(fresh('long-volid'), 'out.iso');
    await expect(
      writeIso({
        volumeId: 'psyopsos-boot 3.18.2-r1000 x86_64',
        out,
        mtime: MTIME,
        files: [{ isoPath: '/boot/syslinux/isolinux.bin', hostPath: '/usr/lib/ISOLINUX/isolinux.bin' }],
      }),
    ).rejects.toThrow(ImageConfigError);
    expect(readdirSync(join(dir, 'long-volid'))).toEqual([]);
  });
});

describe('newc cpio', () => {
  it('is read by GNU cpio: sorted, root-owned, fixed time, content and symlinks intact', () => {
    const archive = newcArchive(
      [
        { path: 'init', type: 'file', mode: 0o755, data: Buffer.from('#!/bin/sh\n') },
        { path: 'bin/sh', type: 'symlink', target: 'busybox' },
        { path: 'bin', type: 'dir', mode: 0o755 },
        { path: 'etc/odd', type: 'file', mode: 0o600, data: Buffer.from('12345') },
        { path: 'etc', type: 'dir', mode: 0o700 },
      ],
      MTIME,
    );
    const listing = execFileSync('cpio', ['-t', '-v', '--quiet'], { input: archive, env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' } }).toString();
    expect(listing.trim().split('\n')).toEqual([
      'drwxr-xr-x   2 root     root            0 Nov 25  2025 bin',
      'lrwxrwxrwx   1 root     root            7 Nov 25  2025 bin/sh -> busybox',
      'drwx------   2 root     root            0 Nov 25  2025 etc',
      '-rw-------   1 root     root            5 Nov 25  2025 etc/odd',
      '-rwxr-xr-x   1 root     root           10 Nov 25  2025 init',
    ]);
    const out = fresh('cpio-extract');
    execFileSync('cpio', ['-i', '-d', '--quiet'], { input: archive, cwd: out });
    expect(readFileSync(join(out, 'etc/odd'), 'utf8')).toBe('12345');
    expect(() => newcArchive([{ path: '../x', type: 'dir', mode: 0o755 }], MTIME)).toThrow(ImageConfigError);
  });
});

describe('initramfs', () => {
  it('resolves early-boot modules and their dependencies from modules.dep, skipping built-in and absent ones', async () => {
    const result = await resolveEarlyModules('/lib/modules', kernelVersion, ['ata_piix', 'sr_mod', 'usb-storage', 'no_such_module', 'unix']);
    expect(result.earlyModules).toEqual(['ata_piix', 'sr_mod', 'usb_storage']);
    expect(result.moduleFiles).toEqual(
      expect.arrayContaining(['kernel/drivers/ata/ata_piix.ko', 'kernel/drivers/ata/libata.ko', 'kernel/drivers/cdrom/cdrom.ko']),
    );
    // unix is built into Debian's kernel: listed in modules.builtin, never in the initramfs.
    expect(readFileSync(join('/lib/modules', kernelVersion, 'modules.builtin'), 'utf8')).toMatch(/\/unix\.ko$/m);
  });

  it.each(['xz', 'zst'] as const)('decompresses .ko.%s modules (newer Alpine kernels), with and without modules.dep', async (suffix) => {
    const modulesDir = fatModules(`modules-${suffix}`, suffix);
    const build = async (name: string) => {
      const out = join(dir, name);
      const result = await buildInitramfs({
        kernelVersion,
        modulesDir,
        busybox: '/bin/busybox',
        volumeId: 'psyopsos-boot 1 x86_64',
        release: '1',
        kernelFlavor: 'lts',
        out,
        mtime: MTIME,
        modules: ['vfat'],
      });
      const extracted = fresh(`${name}-extract`);
      execFileSync('cpio', ['-i', '-d', '--quiet'], { input: gunzipSync(readFileSync(out)), cwd: extracted });
      return { result, moduleRoot: join(extracted, 'lib/modules', kernelVersion) };
    };
    const files = [`kernel/fs/fat/fat.ko.${suffix}`, `kernel/fs/fat/vfat.ko.${suffix}`];
    const withoutDep = await build(`initramfs-${suffix}`);
    expect(withoutDep.result).toEqual({ earlyModules: ['vfat'], moduleFiles: files });
    // As Alpine's kernel package ships it: modules.dep naming the compressed files.
    writeFileSync(join(modulesDir, kernelVersion, 'modules.dep'), `${files[0]}:\n${files[1]}: ${files[0]}\n`);
    const withDep = await build(`initramfs-${suffix}-dep`);
    expect(withDep.result).toEqual(withoutDep.result);
    for (const { moduleRoot } of [withoutDep, withDep]) {
      expect(readFileSync(join(moduleRoot, 'modules.dep'), 'utf8')).toBe('kernel/fs/fat/fat.ko:\nkernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko\n');
      for (const module of ['fat.ko', 'vfat.ko'])
        expect(readFileSync(join(moduleRoot, 'kernel/fs/fat', module))).toEqual(readFileSync(join('/lib/modules', kernelVersion, 'kernel/fs/fat', module)));
      expect(readdirSync(join(moduleRoot, 'kernel/fs/fat')).sort()).toEqual(['fat.ko', 'vfat.ko']);
    }
  });

  it('refuses a compressed module that does not decompress, naming it', async () => {
    const modulesDir = fatModules('modules-bad-zst', 'zst');
    writeFileSync(join(modulesDir, kernelVersion, 'kernel/fs/fat/fat.ko.zst'), 'not zstd');
    const options = { kernelVersion, modulesDir, busybox: '/bin/busybox', volumeId: 'v', release: '1', kernelFlavor: 'lts', mtime: MTIME, modules: ['vfat'] };
    await expect(buildInitramfs({ ...options, out: join(dir, 'initramfs-bad-zst') })).rejects.toThrow(/cannot decompress kernel module .*fat\.ko\.zst/);
    await expect(buildInitramfs({ ...options, out: join(dir, 'initramfs-bad-zst') })).rejects.toBeInstanceOf(ImageConfigError);
  });

  it('once its signal has aborted writes nothing, not even the folder of its output', async () => {
    const folder = join(dir, 'aborted-stage');
    const reason = new Error('interrupted');
    const options = { kernelVersion, modulesDir: '/lib/modules', busybox: '/bin/busybox', volumeId: 'v', release: '1', kernelFlavor: 'lts', mtime: MTIME };
    await expect(buildInitramfs({ ...options, out: join(folder, 'initramfs'), signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(existsSync(folder)).toBe(false);
  });

  it('without modules.dep, takes dependencies from the modules themselves, and decompresses .ko.gz', async () => {
    const modulesDir = fatModules('modules-gz', true);
    const out = join(dir, 'initramfs-gz');
    const result = await buildInitramfs({
      kernelVersion,
      modulesDir,
      busybox: '/bin/busybox',
      volumeId: 'psyopsos-boot 1 x86_64',
      release: '1',
      kernelFlavor: 'debian',
      out,
      mtime: MTIME,
      modules: ['vfat'],
    });
    expect(result).toEqual({ earlyModules: ['vfat'], moduleFiles: ['kernel/fs/fat/fat.ko.gz', 'kernel/fs/fat/vfat.ko.gz'] });
    expect(readdirSync(join(modulesDir, kernelVersion))).not.toContain('modules.dep'); // the input is left alone
    const extracted = fresh('initramfs-gz-extract');
    execFileSync('cpio', ['-i', '-d', '--quiet'], { input: gunzipSync(readFileSync(out)), cwd: extracted });
    const moduleRoot = join(extracted, 'lib/modules', kernelVersion);
    expect(readFileSync(join(moduleRoot, 'modules.dep'), 'utf8')).toBe('kernel/fs/fat/fat.ko:\nkernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko\n');
    expect(readFileSync(join(moduleRoot, 'kernel/fs/fat/vfat.ko'))).toEqual(readFileSync(join('/lib/modules', kernelVersion, 'kernel/fs/fat/vfat.ko')));
    const init = readFileSync(join(extracted, 'init'), 'utf8');
    expect(init).toContain("VOLUME_ID='psyopsos-boot 1 x86_64'");
    expect(init).toContain("EARLY_MODULES='vfat'");
    const listing = cpioList(readFileSync(out));
    expect(listing.every((line) => / root +root /.test(line))).toBe(true);
    expect(listing).toEqual(expect.arrayContaining([expect.stringMatching(/^-rwxr-xr-x .* init$/), expect.stringMatching(/^-rwxr-xr-x .* bin\/busybox$/)]));
  });

  it('is byte-identical when built twice, and refuses a dynamically linked busybox', async () => {
    const modulesDir = fatModules('modules-plain', false);
    const options = { kernelVersion, modulesDir, busybox: '/bin/busybox', volumeId: 'v', release: '1', kernelFlavor: 'debian', mtime: MTIME };
    await buildInitramfs({ ...options, out: join(dir, 'initramfs-a') });
    await buildInitramfs({ ...options, out: join(dir, 'initramfs-b') });
    expect(sha256(join(dir, 'initramfs-a'))).toBe(sha256(join(dir, 'initramfs-b')));
    await expect(buildInitramfs({ ...options, busybox: '/bin/ls', out: join(dir, 'initramfs-dynamic') })).rejects.toThrow(/dynamically linked/);
    expect(readdirSync(dir)).not.toContain('initramfs-dynamic');
  });
});

describe('squashfs images', () => {
  function unsquashList(image: string): string[] {
    return execFileSync('unsquashfs', ['-lln', '-d', '', image], { env: { ...process.env, TZ: 'UTC' } })
      .toString()
      .trim()
      .split('\n')
      .map((line) => line.replace(/ +/g, ' '));
  }

  it('modloop holds modules/<kver>/… and modules/firmware/…, all root', async () => {
    const modulesDir = fatModules('modloop-modules', false);
    // As a kernel package ships it (a missing one is made by depmod: the next test).
    writeFileSync(join(modulesDir, kernelVersion, 'modules.dep'), 'kernel/fs/fat/fat.ko:\nkernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko\n');
    const firmware = fresh('firmware');
    mkdirSync(join(firmware, 'vendor'));
    writeFileSync(join(firmware, 'vendor/blob.bin'), 'fw');
    const out = join(dir, 'modloop');
    await buildModloop({ kernelVersion, modulesDir, firmwareDir: firmware, out, mtime: MTIME });
    const listing = unsquashList(out);
    const paths = listing.map((line) => line.split(' ').at(-1));
    expect(paths).toEqual([
      '',
      '/modules',
      `/modules/${kernelVersion}`,
      ...['kernel', 'kernel/fs', 'kernel/fs/fat', 'kernel/fs/fat/fat.ko', 'kernel/fs/fat/vfat.ko', 'modules.builtin', 'modules.dep', 'modules.order'].map(
        (path) => `/modules/${kernelVersion}/${path}`,
      ),
      '/modules/firmware',
      '/modules/firmware/vendor',
      '/modules/firmware/vendor/blob.bin',
    ]);
    expect(listing.every((line) => line.split(' ')[1] === '0/0')).toBe(true);
    expect(listing.every((line) => line.includes('2025-11-25 00:00'))).toBe(true);
    await expect(buildModloop({ kernelVersion: '0.0.0-none', modulesDir, out: join(dir, 'modloop-none'), mtime: MTIME })).rejects.toThrow(ImageConfigError);
  });

  const depmodReads = execFileSync('depmod', ['--version']).toString();
  it.each(['', 'xz', 'zst', 'gz'] as const)('a kernel package without modules.dep gets one from depmod in the modloop (modules %s)', async (suffix) => {
    const supported = suffix === '' || depmodReads.includes(`+${{ xz: 'XZ', zst: 'ZSTD', gz: 'ZLIB' }[suffix]}`);
    const modulesDir = fatModules(`modloop-dep-${suffix || 'plain'}`, suffix === '' ? false : suffix);
    const out = join(dir, `modloop-dep-${suffix || 'plain'}.squashfs`);
    const ko = (name: string) => `kernel/fs/fat/${name}.ko${suffix ? `.${suffix}` : ''}`;
    if (!supported) {
      // This host's kmod cannot read them: refused, naming a module, rather than a modloop modprobe finds nothing in.
      await expect(buildModloop({ kernelVersion, modulesDir, out, mtime: MTIME })).rejects.toThrow(
        new RegExp(`no modules.dep .*${ko('fat').replace(/\./g, '\\.')}`),
      );
      return;
    }
    await buildModloop({ kernelVersion, modulesDir, out, mtime: MTIME });
    expect(readdirSync(join(modulesDir, kernelVersion))).not.toContain('modules.dep'); // the input is left alone
    const extracted = join(fresh(`modloop-dep-${suffix || 'plain'}-x`), 'x');
    execFileSync('unsquashfs', ['-q', '-n', '-d', extracted, out]);
    const dep = readFileSync(join(extracted, 'modules', kernelVersion, 'modules.dep'), 'utf8');
    expect(dep.split('\n').filter(Boolean).sort()).toEqual([`${ko('fat')}:`, `${ko('vfat')}: ${ko('fat')}`]);
    expect(readdirSync(join(extracted, 'modules', kernelVersion))).toEqual(expect.arrayContaining(['modules.alias', 'modules.dep.bin']));
  });

  it('root image: everything root-owned except the special entries, modes kept', async () => {
    const root = fresh('rootimage-tree');
    mkdirSync(join(root, 'etc'));
    mkdirSync(join(root, 'var/empty'), { recursive: true });
    mkdirSync(join(root, 'dev'));
    writeFileSync(join(root, 'etc/shadow'), 'x', { mode: 0o640 });
    writeFileSync(join(root, 'etc/"quoted" name'), 'y', { mode: 0o644 });
    writeFileSync(join(root, 'su'), 'z', { mode: 0o755 });
    execFileSync('chown', ['-R', '1234:1234', root]);
    const out = join(dir, 'rootfs.squashfs');
    await buildRootImage({
      rootDir: root,
      specialEntries: [
        { path: 'etc/shadow', uid: 0, gid: 42, mode: 0o640 },
        { path: 'su', uid: 0, gid: 0, mode: 0o4755 },
        { path: '/var/empty', uid: 22, gid: 22, mode: 0o700 },
      ],
      devices: [
        { path: 'dev/console', type: 'char', mode: 0o600, major: 5, minor: 1 },
        { path: 'dev/sda', type: 'block', mode: 0o660, major: 8, minor: 0 },
        { path: 'var/pipe', type: 'fifo', mode: 0o644 },
      ],
      out,
      mtime: MTIME,
    });
    const listing = unsquashList(out);
    const entry = (path: string): string =>
      listing
        .find((line) => line.endsWith(` ${path}`))!
        .split(' ')
        .slice(0, 2)
        .join(' ');
    expect(entry('/etc/shadow')).toBe('-rw-r----- 0/42');
    expect(entry('/su')).toBe('-rwsr-xr-x 0/0');
    expect(entry('/var/empty')).toBe('drwx------ 22/22');
    expect(entry('/etc/"quoted" name')).toBe('-rw-r--r-- 0/0');
    expect(entry('/var')).toBe('drwxr-xr-x 0/0');
    expect(listing.find((line) => line.endsWith(' /dev/console'))).toMatch(/^crw------- 0\/0 5, ?1 /);
    expect(listing.find((line) => line.endsWith(' /dev/sda'))).toMatch(/^brw-rw---- 0\/0 8, ?0 /);
    expect(entry('/var/pipe')).toBe('prw-r--r-- 0/0');
    await expect(
      buildRootImage({ rootDir: root, specialEntries: [{ path: 'nope', uid: 0, gid: 0, mode: 0o600 }], out: join(dir, 'rootfs-bad'), mtime: MTIME }),
    ).rejects.toThrow(/nope is not in the root tree/);
  });
});

describe('boot loaders', () => {
  it('syslinux and grub configs boot the same kernel, initramfs and command line', () => {
    const { syslinuxCfg, grubCfg } = bootLoaderConfigs({
      kernelFlavor: 'lts',
      cmdline: 'quiet console=tty0 console=ttyS0,115200',
      volumeId: 'psyopsos-boot 251125 x86_64',
    });
    expect(syslinuxCfg).toBe(
      'SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT lts\n\nLABEL lts\n\tMENU LABEL psyopsOS lts\n\tKERNEL /boot/vmlinuz-lts\n\tINITRD /boot/initramfs-lts\n\tAPPEND quiet console=tty0 console=ttyS0,115200\n',
    );
    expect(grubCfg).toContain('set timeout=0\n');
    expect(grubCfg).toContain('\tlinux\t/boot/vmlinuz-lts quiet console=tty0 console=ttyS0,115200\n\tinitrd\t/boot/initramfs-lts\n');
    expect(() => bootLoaderConfigs({ kernelFlavor: 'lts', cmdline: 'a"b', volumeId: 'v' })).toThrow(ImageConfigError);
  });

  it('EFI binary and FAT image are reproducible and the image holds /efi/boot/bootx64.efi', async () => {
    const first = await buildEfiBoot({ volumeId: 'psyopsos-boot 251125 x86_64', outDir: fresh('efi-a'), mtime: MTIME });
    await new Promise((resolve) => setTimeout(resolve, 1100)); // a second later: wall-clock dates would differ
    const second = await buildEfiBoot({ volumeId: 'psyopsos-boot 251125 x86_64', outDir: fresh('efi-b'), mtime: MTIME });
    expect(sha256(first.efiBinary)).toBe(sha256(second.efiBinary));
    expect(sha256(first.efiImage)).toBe(sha256(second.efiImage));
    const listing = execFileSync('mdir', ['-i', first.efiImage, '::/efi/boot']).toString();
    expect(listing).toMatch(/bootx64\s+efi\s+\d+ 2025-11-25/);
    expect(listing).toContain('Serial Number is 0000-0000');
    const other = await buildEfiBoot({ volumeId: 'psyopsos-boot 251126 x86_64', outDir: fresh('efi-c'), mtime: MTIME });
    expect(sha256(other.efiBinary)).not.toBe(sha256(first.efiBinary)); // the label is embedded
    expect(readdirSync(join(dir, 'efi-a'))).toEqual(['boot', 'efi']);
  });
});

describe('ISO', () => {
  it('same inputs and mtime give the same bytes; another mtime does not', async () => {
    const a = await buildTestMedia(fresh('repro-a'), { mtime: MTIME });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const b = await buildTestMedia(fresh('repro-b'), { mtime: MTIME });
    const c = await buildTestMedia(fresh('repro-c'), { mtime: MTIME + 86_400 });
    expect(sha256(a.iso)).toBe(sha256(b.iso));
    expect(sha256(c.iso)).not.toBe(sha256(a.iso));
    const report = execFileSync('xorriso', ['-indev', a.iso, '-report_el_torito', 'plain', '-report_system_area', 'plain'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    }).toString();
    expect(report).toMatch(/El Torito boot img : +1 +BIOS +y +none .* 4 +\d+\n/);
    expect(report).toMatch(/El Torito boot img : +2 +UEFI +y +none .* 2880 +\d+\n/);
    expect(report).toContain('El Torito img path :   1  /boot/syslinux/isolinux.bin');
    expect(report).toContain('El Torito img path :   2  /boot/grub/efi.img');
    expect(report).toContain('System area summary: MBR isohybrid cyl-align-on GPT');
    const volumeId = execFileSync('xorriso', ['-indev', a.iso, '-pvd_info'], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    expect(volumeId).toContain('Volume Id    : psyopsos-boot 251125 x86_64');
    expect(volumeId).toMatch(/Creation Time: 2025112500000000/);
  });

  it('a failing xorriso leaves neither the ISO nor a temporary file', async () => {
    const out = fresh('iso-fail');
    await expect(
      writeIso({
        volumeId: 'v',
        out: join(out, 'out.iso'),
        mtime: MTIME,
        files: [
          { isoPath: '/boot/syslinux/isolinux.bin', hostPath: '/usr/lib/ISOLINUX/isolinux.bin' },
          { isoPath: '/boot/grub/efi.img', hostPath: join(out, 'missing-efi.img') },
        ],
      }),
    ).rejects.toThrow(ToolFailedError);
    expect(readdirSync(out)).toEqual([]);
  });
});
