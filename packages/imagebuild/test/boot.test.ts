/**
 * The boot media really boot: an ISO built by the stages from this host's Debian kernel, booted in
 * QEMU under TCG with SeaBIOS (ISOLINUX) and with OVMF (GRUB), must follow the /init contract.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootInQemu } from '../src/qemu.js';
import { buildTestMedia, RELEASE, type TestMedia } from './media-fixture.js';

const BOOT_TIMEOUT_MS = 240_000;
const MTIME = 1_764_028_800;

function lines(serial: string): string[] {
  return serial.split(/\r?\n/).map((line) => line.replace(/\r/g, '').trim());
}

describe('boot media in QEMU (TCG)', () => {
  let dir: string;
  let media: TestMedia;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'psyops-boot-test-'));
    media = await buildTestMedia(dir, { mtime: MTIME });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const uefi of [false, true]) {
    it(`boots with ${uefi ? 'UEFI (OVMF, GRUB)' : 'BIOS (SeaBIOS, ISOLINUX)'} following the /init contract`, {
      timeout: BOOT_TIMEOUT_MS + 30_000,
    }, async () => {
      const result = await bootInQemu({ iso: media.iso, uefi, timeoutMs: BOOT_TIMEOUT_MS, serialLog: join(dir, `serial-${uefi ? 'uefi' : 'bios'}.log`) });
      expect(result.reason, result.serial.slice(-2000)).toBe('poweroff');
      const init = lines(result.serial).filter((line) => line.startsWith('psyops-init: '));
      expect(init).toEqual([
        expect.stringMatching(/^psyops-init: early modules: \d+ loaded$/),
        `psyops-init: boot media /dev/sr0 label="${media.volumeId}"`,
        `psyops-init: modloop ${media.kernelVersion} mounted`,
        'psyops-init: root: rootfs.squashfs in RAM under an overlay',
        'psyops-init: apkovl psyopsOS-bootstrap.apkovl.tar.gz applied',
        'psyops-init: first-boot scripts: 3 ran, 0 failed',
        'psyops-init: switching root',
      ]);
      const root = lines(result.serial);
      expect(root).toContain('test-root: init running as pid 1');
      expect(root).toContain('test-root: hostname psyopsOS-bootstrap'); // from the apkovl
      expect(root).toContain('test-root: root fstype overlay');
      // Install order, each package's pre-install before its post-install, with /proc inside the chroot.
      expect(root).toContain('test-root: firstboot log [alpha-pre alpha-post beta-post-with-proc ]');
      expect(root).toContain('test-root: firstboot dir removed');
      expect(root).toContain('test-root: media at /media/boot'); // the modloop is read from it, as on Alpine
      expect(root).toContain('test-root: secret dir mode 700');
      expect(root).toContain('test-root: owned 1000:1000:640');
      expect(root).toContain('test-root: modloop module vfat loaded');
      expect(root).toContain(`psyopsOS: booted release=${RELEASE} root=overlay`);
      expect(root.filter((line) => line.startsWith('psyopsOS: ')).at(-1)).toMatch(/^psyopsOS: postboot/);
    });
  }

  it('stops with FATAL and a rescue shell when the media never shows up', { timeout: BOOT_TIMEOUT_MS + 60_000 }, async () => {
    const wrong = await buildTestMedia(dir, { mtime: MTIME, name: 'wrong-label', initramfsVolumeId: 'psyopsos-boot other x86_64', mediaWaitSeconds: 2 });
    const result = await bootInQemu({ iso: wrong.iso, timeoutMs: BOOT_TIMEOUT_MS, until: /rescue shell follows[^\n]*\n/ });
    expect(result.reason, result.serial.slice(-2000)).toBe('matched');
    expect(lines(result.serial)).toContain('psyops-init: FATAL: no boot media labelled "psyopsos-boot other x86_64" after 2 s');
    expect(result.serial).not.toContain('psyops-init: switching root');
  });
});
