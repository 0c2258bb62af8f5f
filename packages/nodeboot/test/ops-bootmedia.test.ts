import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { decodePublicKey } from '@psyops/signing';
import { NODE_PATHS, TempRootSystem, type CommandResult, type NodeSystem } from '../src/index.js';
import { checkWholeDisk, isoVolumeId, mountsOn } from '../src/ops/block-devices.js';
import { verifyBootImage, writeBootImage } from '../src/ops/bootmedia.js';
import { makeOpsCommands } from '../src/ops/commands.js';
import { tempDir } from './fixtures.js';

const run = promisify(execFile);
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** A minisign key pair made by the real minisign (no password), and an ISO made by the real xorriso, signed by it. */
async function signedIso(dir: string, volumeId: string): Promise<{ iso: string; publicKey: string }> {
  const publicKey = join(dir, 'minisign.pub');
  await run('minisign', ['-G', '-W', '-p', publicKey, '-s', join(dir, 'minisign.key')], { timeout: 30_000 });
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'boot'), { recursive: true });
  writeFileSync(join(tree, 'boot', 'payload'), Buffer.alloc(300_000, 'psyops'));
  await run('mksquashfs', [join(tree, 'boot', 'payload'), join(tree, 'boot', 'modloop-virt'), '-quiet', '-noappend'], { timeout: 60_000 });
  const iso = join(dir, 'new.iso');
  await run('xorriso', ['-as', 'mkisofs', '-quiet', '-V', volumeId, '-o', iso, tree], { timeout: 60_000 });
  await run('minisign', ['-S', '-s', join(dir, 'minisign.key'), '-m', iso, '-t', 'type=psyopsOS test'], { timeout: 30_000 });
  return { iso, publicKey };
}

/** A node root whose secret volume (mounted by postboot) holds `publicKey`. */
function rootWithKey(publicKey: string): string {
  const root = tempDir('bootmediaroot');
  mkdirSync(join(root, NODE_PATHS.secretMount), { recursive: true });
  writeFileSync(join(root, NODE_PATHS.secretMount, 'minisign.pubkey'), readFileSync(publicKey));
  return root;
}

/** The temporary root's files, with commands (umount, sync, blockdev) run for real on this machine. */
function hostCommands(root: string): NodeSystem {
  const real = (command: string, args: readonly string[], timeoutMs: number): Promise<CommandResult> =>
    run(command, args, { timeout: timeoutMs }).then(
      ({ stdout, stderr }) => ({ exitCode: 0, stdout, stderr }),
      (error: { code?: number; stdout?: string; stderr?: string }) => ({
        exitCode: typeof error.code === 'number' ? error.code : 1,
        stdout: error.stdout ?? '',
        stderr: error.stderr ?? '',
      }),
    );
  return Object.create(new TempRootSystem({ root }), { run: { value: real } });
}

describe('write-bootmedia: the ISO verified with the secret volume key before anything is written, then written and read back', () => {
  let dir: string;
  let iso: string;
  let publicKey: string;
  beforeAll(async () => {
    dir = tempDir('bootmedia');
    ({ iso, publicKey } = await signedIso(dir, 'psyopsos-boot 261202 x86_64'));
  });

  it('verifies the real minisign signature, writes to a target, reads it back; a tampered ISO or read-back is refused', async () => {
    const key = decodePublicKey(readFileSync(publicKey, 'utf8'));
    expect(await verifyBootImage(iso, key)).toBe('type=psyopsOS test');
    expect(isoVolumeId(iso)).toBe('psyopsos-boot 261202 x86_64');
    const target = join(dir, 'disk.img');
    writeFileSync(target, Buffer.alloc(4 << 20, 0xee));
    let flushed = 0;
    const report = await writeBootImage(iso, { path: target, beforeReadBack: async () => void flushed++ });
    const image = readFileSync(iso);
    expect(report).toMatchObject({ bytes: image.length, sha256: sha256(image) });
    expect(flushed).toBe(1);
    const disk = readFileSync(target);
    expect(disk.subarray(0, image.length).equals(image)).toBe(true);
    expect(disk.length).toBe(4 << 20); // written in place, not truncated
    expect(disk[image.length]).toBe(0xee);

    // What reads back differs from what was written (a failing disk): refused.
    await expect(
      writeBootImage(iso, { path: target, beforeReadBack: async () => writeFileSync(target, Buffer.from('x'), { flag: 'r+' }) }),
    ).rejects.toMatchObject({
      code: 'BOOTMEDIA_WRITE_FAILED',
      message: expect.stringMatching(/does not read back as written/),
    });

    const tampered = join(dir, 'tampered.iso');
    const bytes = Buffer.from(image);
    bytes[40_000]! ^= 0x01;
    writeFileSync(tampered, bytes);
    writeFileSync(`${tampered}.minisig`, readFileSync(`${iso}.minisig`));
    await expect(verifyBootImage(tampered, key)).rejects.toMatchObject({
      code: 'BOOTMEDIA_BAD_SIGNATURE',
      message: expect.stringMatching(/^\S+tampered\.iso refused, nothing written: /),
    });
    await expect(verifyBootImage(iso, key, join(dir, 'none.minisig'))).rejects.toMatchObject({ code: 'BOOTMEDIA_BAD_SIGNATURE' });
  });

  it('refuses a plain file, a partition and a disk too small, before reading the ISO', async () => {
    const file = join(dir, 'plain.img');
    writeFileSync(file, '');
    const out: string[] = [];
    const commands = makeOpsCommands({
      system: () => new TempRootSystem({ root: rootWithKey(publicKey) }),
      out: (t) => out.push(t),
      err: (t) => out.push(t),
      env: {},
    });
    expect(await commands['write-bootmedia']([iso, file])).toBe(1);
    expect(out.join('')).toBe(`psyops-node: ${file} is not a block device (BOOTMEDIA_BAD_DEVICE)\n`);
    const sysfs = join(dir, 'sys');
    mkdirSync(join(sysfs, 'null'), { recursive: true });
    writeFileSync(join(sysfs, 'null', 'partition'), '1\n');
    expect(() => checkWholeDisk('/dev/null', 10, { sysfs })).toThrow('/dev/null is a partition; give the whole disk');
    expect(await commands['write-bootmedia']([join(dir, 'missing.iso'), file])).toBe(2);
    expect(out.at(-1)).toMatch(/missing\.iso is not a file \(USAGE\)/);
    const env = { PSYOPS_BOOT_LABEL_PREFIX: 'psyopsos-boot-none-here-7f3a' };
    const withEnv = makeOpsCommands({
      system: () => new TempRootSystem({ root: rootWithKey(publicKey) }),
      out: (t) => out.push(t),
      err: (t) => out.push(t),
      env,
    });
    expect(await withEnv['write-bootmedia']([iso])).toBe(1);
    expect(out.at(-1)).toMatch(/no device with a label starting with "psyopsos-boot-none-here-7f3a"; give DEVICE explicitly/);
  });

  // A real block device: a loop device over a file. Needs root and /dev/loop-control (this machine has them).
  const canLoop =
    process.getuid?.() === 0 &&
    (() => {
      try {
        return statSync('/dev/loop-control').isCharacterDevice();
      } catch {
        return false;
      }
    })();

  it.skipIf(!canLoop)(
    'on a loop device holding mounted boot media: refuses a tampered ISO untouched, then unmounts the media and its loop-mounted modloop, writes, reads back',
    async () => {
      const backing = join(dir, 'bootdisk.img');
      const image = readFileSync(iso);
      writeFileSync(backing, '');
      truncateSync(backing, image.length + (1 << 20));
      const device = execFileSync('losetup', ['-f', '--show', backing], { encoding: 'utf8', timeout: 30_000 }).trim();
      const media = join(dir, 'media-boot');
      const modloop = join(dir, 'modloop');
      mkdirSync(media);
      mkdirSync(modloop);
      onTestFinished(() => {
        for (const mountpoint of [modloop, media]) execFileSync('sh', ['-c', `umount -l '${mountpoint}' 2>/dev/null || true`]);
        execFileSync('losetup', ['-d', device], { timeout: 30_000 });
      });
      // The old boot media as the initramfs leaves it: mounted read-only, the modloop loop-mounted from it. ext4 (as a
      // disk slot's media is): this machine's kernel has no iso9660.
      const tree = join(tempDir('oldmedia'), 'tree');
      mkdirSync(join(tree, 'boot'), { recursive: true });
      execFileSync('mksquashfs', [iso, join(tree, 'boot', 'modloop-virt'), '-quiet', '-noappend'], { timeout: 60_000 });
      execFileSync('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', '-L', 'psyopsOS-A', '-d', tree, device], { timeout: 60_000 });
      execFileSync('mount', ['-t', 'ext4', '-o', 'ro', device, media], { timeout: 30_000 });
      execFileSync('mount', ['-t', 'squashfs', '-o', 'loop,ro', join(media, 'boot', 'modloop-virt'), modloop], { timeout: 30_000 });
      expect(mountsOn(device)).toEqual([modloop, media]);

      const root = rootWithKey(publicKey);
      const out: string[] = [];
      const err: string[] = [];
      const commands = makeOpsCommands({ system: () => hostCommands(root), out: (t) => out.push(t), err: (t) => err.push(t), env: {} });
      const tampered = join(dir, 'bad.iso');
      const bytes = Buffer.from(image);
      bytes[bytes.length - 10]! ^= 0x01;
      writeFileSync(tampered, bytes);
      const before = sha256(readFileSync(backing));
      expect(await commands['write-bootmedia']([tampered, device, '--signature', `${iso}.minisig`])).toBe(1);
      expect(err.join('')).toMatch(/^psyops-node: \S+bad\.iso refused, nothing written: .*\(BOOTMEDIA_BAD_SIGNATURE\)\n$/);
      expect(sha256(readFileSync(backing))).toBe(before);
      expect(mountsOn(device)).toEqual([modloop, media]); // nothing unmounted either

      // A file held open on the media (a shell whose cwd is there, say) makes it busy: unmounted lazily.
      const held = openSync(join(media, 'boot', 'modloop-virt'), 'r');
      onTestFinished(() => closeSync(held));
      expect(await commands['write-bootmedia']([iso, device, '--json']), err.join('')).toBe(0);
      const report = JSON.parse(out.join(''));
      expect(report).toMatchObject({ iso, device, bytes: image.length, sha256: sha256(image), trustedComment: 'type=psyopsOS test' });
      expect(report.unmounted).toEqual([`unmounted ${modloop}`, `unmounted ${media} (lazily: busy)`]);
      expect(mountsOn(device)).toEqual([]);
      expect(readFileSync(backing).subarray(0, image.length).equals(image)).toBe(true);
      expect(isoVolumeId(device)).toBe('psyopsos-boot 261202 x86_64');
    },
  );
});

describe('psyopsOS-write-bootmedia (the shell script in psyopsOS-base) hands a checked whole disk to psyops-node', () => {
  const isRoot = process.getuid?.() === 0;
  it.skipIf(!isRoot)('passes ISO, the disk, --signature (a path with a space) and --json on, in that order', async () => {
    const dir = tempDir('bootmediascript');
    const iso = join(dir, 'new.iso');
    writeFileSync(iso, Buffer.alloc(4096));
    const signature = join(dir, 'my sig.minisig');
    writeFileSync(signature, 'x');
    const backing = join(dir, 'disk.img');
    writeFileSync(backing, '');
    truncateSync(backing, 1 << 20);
    const device = execFileSync('losetup', ['-f', '--show', backing], { encoding: 'utf8', timeout: 30_000 }).trim();
    onTestFinished(() => void execFileSync('losetup', ['-d', device], { timeout: 30_000 }));
    // What psyops-node receives (the real one is the nodeboot bundle; its write-bootmedia is tested above).
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'psyops-node'), '#!/bin/sh\nfor a in "$@"; do echo "[$a]"; done\n', { mode: 0o755 });
    const script = join(import.meta.dirname, '..', '..', 'apkpkg', 'project', 'psyopsOS-base', 'psyopsOS-write-bootmedia');
    const { stdout } = await run('sh', [script, '--json', iso, device, '--signature', signature], {
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
      timeout: 30_000,
    });
    expect(stdout).toBe(`[write-bootmedia]\n[${iso}]\n[${device}]\n[--signature]\n[${signature}]\n[--json]\n`);
    const missing = await run('sh', [script, iso, device], { env: { ...process.env, PATH: '/usr/bin:/bin' }, timeout: 30_000 }).catch(
      (error: { stderr: string; code: number }) => error,
    );
    expect(missing).toMatchObject({ code: 1, stderr: expect.stringContaining('psyops-node is not installed') });
  });
});
