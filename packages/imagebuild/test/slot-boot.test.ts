/**
 * /init boots a disk slot: the real initramfs finds the ext4 file system named by
 * `psyopsos.slot=` on a GPT disk (virtio, as QEMU and many PCs attach it), and on a trial boot arms
 * softdog so that a system nobody marks good really reboots. Under TCG: once from the disk itself
 * (OVMF and a stand-in GRUB, not build-disk's, which is tested with build-disk), then by direct
 * kernel boot with the disk as a plain drive.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parseGrubEnv } from '@psyops/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootInQemu } from '../src/qemu.js';
import { RELEASE } from './media-fixture.js';
import { buildSlotDisk, ESP_OFFSET, SLOT_RELEASES, type SlotDisk } from './slot-fixture.js';

const BOOT_TIMEOUT_MS = 240_000;
const MTIME = 1_764_028_800;
/** The smallest margin /init honours is 60 s; 61 tells it apart from softdog's own default (60). */
const TRIAL_TIMEOUT_S = 61;
const CONSOLE = 'console=ttyS0,115200 quiet';

// OVMF clears the screen with escape sequences that share a line with the first thing /init says.
const TERMINAL_ESCAPE = new RegExp(`${String.fromCharCode(0x1b)}\\[[=?]?[0-9;]*[A-Za-z]`, 'g');

function lines(serial: string): string[] {
  return serial.split(/\r?\n/).map((line) => line.replace(TERMINAL_ESCAPE, '').replace(/\r/g, '').trim());
}

const initLines = (serial: string): string[] => lines(serial).filter((line) => line.startsWith('psyops-init: '));

describe('booting a disk slot (QEMU, TCG)', () => {
  let dir: string;
  let slots: SlotDisk;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'psyops-slot-boot-'));
    slots = await buildSlotDisk(dir, MTIME);
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('carries ext4 with crc32c and the disk drivers as early modules, and softdog only on demand', () => {
    const extracted = join(dir, 'initramfs-extract');
    execFileSync('mkdir', ['-p', extracted]);
    execFileSync('cpio', ['-i', '-d', '--quiet'], { input: gunzipSync(readFileSync(slots.initrd)), cwd: extracted });
    const init = readFileSync(join(extracted, 'init'), 'utf8');
    const early = /^EARLY_MODULES='([^']*)'$/m.exec(init)?.[1]?.split(' ') ?? [];
    expect(early).toEqual(expect.arrayContaining(['virtio_pci', 'virtio_blk', 'ahci', 'sd_mod', 'nvme', 'crc32c_generic', 'ext4']));
    expect(early).not.toContain('softdog');
    expect(early).not.toContain('vfat');
    const dep = readFileSync(join(extracted, 'lib/modules', slots.kernelVersion, 'modules.dep'), 'utf8');
    expect(dep).toMatch(/^kernel\/drivers\/watchdog\/softdog\.ko: kernel\/drivers\/watchdog\/watchdog\.ko$/m);
    expect(dep).toMatch(/^kernel\/fs\/ext4\/ext4\.ko: .*jbd2\.ko/m);
    expect(dep).toMatch(/^kernel\/crypto\/crc32c_generic\.ko:$/m);
  });

  it(
    'boots from the disk (UEFI, its GRUB writing grubenv), finds slot A by its label, mounts it read-only as ext4 and says a rollback happened',
    async () => {
      const result = await bootInQemu({ disk: slots.disk, uefi: true, timeoutMs: BOOT_TIMEOUT_MS, serialLog: join(dir, 'serial-disk-a.log') });
      expect(result.reason, result.serial.slice(-3000)).toBe('poweroff');
      // GRUB writes through the firmware's console: its line comes with terminal escapes around it.
      expect(result.serial).toMatch(/grub-fixture: booting slot A/);
      expect(initLines(result.serial)).toEqual([
        'psyops-init: previous trial of psyopsOS-B did not come up; booting the last good slot',
        expect.stringMatching(/^psyops-init: early modules: \d+ loaded$/),
        'psyops-init: boot media /dev/vda4 label="psyopsOS-A" (slot)',
        `psyops-init: modloop ${slots.kernelVersion} mounted`,
        'psyops-init: root: rootfs.squashfs in RAM under an overlay',
        'psyops-init: apkovl psyopsOS-slots.apkovl.tar.gz applied',
        'psyops-init: first-boot scripts: 0 ran, 0 failed',
        'psyops-init: switching root',
      ]);
      const root = lines(result.serial);
      expect(root).toContain('slot-root: media /dev/vda4 ext4 ro');
      expect(root).toContain(`slot-root: release ${SLOT_RELEASES.A} x86_64`);
      expect(root).toContain('slot-root: softdog not loaded');
      expect(root).toContain(`psyopsOS: booted release=${RELEASE} root=overlay`);
      // The boot disk is attached read-write: GRUB's save_env landed in the image file.
      const grubenv = execFileSync('mcopy', ['-i', `${slots.disk}@@${ESP_OFFSET}`, '::/boot/grub/grubenv', '-']);
      expect(parseGrubEnv(grubenv).get('fixture_booted')).toBe('A');
      console.log(`slot A boot from the disk (UEFI, GRUB): ${result.durationMs} ms`);
    },
    BOOT_TIMEOUT_MS + 30_000,
  );

  it(
    'on a trial boot arms the watchdog, which reboots the guest when nothing marks it good (UEFI, reboot in the same QEMU)',
    async () => {
      const seen = new Map<string, number>();
      let serial = '';
      const watch = { armed: /psyops-init: trial boot of psyopsOS-B: the watchdog/, fired: /softdog: Initiating system reboot/ };
      const result = await bootInQemu({
        kernel: {
          image: slots.kernel,
          initrd: slots.initrd,
          append: `${CONSOLE} psyopsos.slot=psyopsOS-B psyopsos.trial=1 psyopsos.trial_timeout=${TRIAL_TIMEOUT_S}`,
        },
        drives: [{ file: slots.disk }],
        uefi: true,
        allowReboot: true,
        // The second boot's /init: the reset started the kernel again inside the same QEMU. The line
        // must be whole: serial output arrives in pieces, and a match stops QEMU at once.
        until: /psyops-init: early modules[\s\S]*Initiating system reboot[\s\S]*psyops-init: early modules[^\n]*\n/,
        timeoutMs: BOOT_TIMEOUT_MS + TRIAL_TIMEOUT_S * 1000,
        serialLog: join(dir, 'serial-trial-b.log'),
        onSerial: (text) => {
          serial += text;
          for (const [name, pattern] of Object.entries(watch)) if (!seen.has(name) && pattern.test(serial)) seen.set(name, performance.now());
        },
      });
      expect(result.reason, result.serial.slice(-3000)).toBe('matched');
      const [first, second] = result.serial.split(/softdog: Initiating system reboot/);
      expect(initLines(first ?? '')).toEqual([
        expect.stringMatching(/^psyops-init: early modules: \d+ loaded$/),
        `psyops-init: trial boot of psyopsOS-B: the watchdog reboots in ${TRIAL_TIMEOUT_S} s unless it is marked good`,
        'psyops-init: boot media /dev/vda5 label="psyopsOS-B" (slot)',
        `psyops-init: modloop ${slots.kernelVersion} mounted`,
        'psyops-init: root: rootfs.squashfs in RAM under an overlay',
        'psyops-init: apkovl psyopsOS-slots.apkovl.tar.gz applied',
        'psyops-init: first-boot scripts: 0 ran, 0 failed',
        'psyops-init: switching root',
      ]);
      // Closed without the magic 'V': the kernel keeps counting.
      expect(first).toMatch(/watchdog did not stop!/);
      const root = lines(first ?? '');
      expect(root).toContain('slot-root: media /dev/vda5 ext4 ro');
      expect(root).toContain(`slot-root: release ${SLOT_RELEASES.B} x86_64`);
      expect(root).toContain(`slot-root: softdog loaded, state active, timeout ${TRIAL_TIMEOUT_S} s`);
      expect(root).toContain('slot-root: trial not marked good: waiting for the watchdog');
      expect(initLines(second ?? '')[0]).toMatch(/^psyops-init: early modules: \d+ loaded$/);
      // Not at once: the margin passed first (guest time never runs ahead of the host's).
      const armed = seen.get('armed');
      const fired = seen.get('fired');
      expect(armed).toBeDefined();
      expect(fired).toBeDefined();
      expect((fired ?? 0) - (armed ?? 0)).toBeGreaterThan((TRIAL_TIMEOUT_S - 5) * 1000);
      console.log(`trial boot of B until the second boot's /init (UEFI, direct kernel): ${result.durationMs} ms`);
    },
    BOOT_TIMEOUT_MS + TRIAL_TIMEOUT_S * 1000 + 30_000,
  );

  it(
    'stops with FATAL and a rescue shell for a slot label that is not one, before looking for media',
    async () => {
      const result = await bootInQemu({
        kernel: { image: slots.kernel, initrd: slots.initrd, append: `${CONSOLE} psyopsos.slot=psyopsOS-C` },
        drives: [{ file: slots.disk, readonly: true }],
        until: /rescue shell follows[^\n]*\n/,
        timeoutMs: BOOT_TIMEOUT_MS,
      });
      expect(result.reason, result.serial.slice(-3000)).toBe('matched');
      expect(initLines(result.serial)).toEqual([
        'psyops-init: FATAL: psyopsos.slot="psyopsOS-C" is not a slot label (psyopsOS-A or psyopsOS-B)',
        `psyops-init: release ${RELEASE}; a rescue shell follows (the boot cannot continue)`,
      ]);
      console.log(`bad slot label until the rescue shell: ${result.durationMs} ms`);
    },
    BOOT_TIMEOUT_MS + 30_000,
  );
});
