import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootInQemu, QemuAbortedError } from '../src/qemu.js';
import { buildBootFixture, type BootFixture } from './qemu-fixture.js';
import { scriptedGuest } from './qemu-script-fixture.js';

const BOOT_TIMEOUT_MS = 150_000;

describe('bootInQemu (direct kernel boot under TCG)', () => {
  let dir: string;
  let fixture: BootFixture;
  let secretImage: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'psyops-qemu-test-'));
    fixture = await buildBootFixture(dir);
    const secretTree = join(dir, 'secret');
    mkdirSync(secretTree);
    writeFileSync(join(secretTree, 'node.txt'), 'secret\n');
    secretImage = join(dir, 'secret.img');
    execFileSync('mkfs.ext4', ['-q', '-L', 'psyops-secret', '-d', secretTree, secretImage, '8M']);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it(
    'powers off, sees the secret USB disk, reaches a host server twice and logs the serial console',
    async () => {
      let requests = 0;
      const server = createServer((_request, response) => response.end(`answer-${++requests}`));
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as AddressInfo;
      const serialLog = join(dir, 'serial.log');
      const streamed: string[] = [];
      try {
        const result = await bootInQemu({
          kernel: { image: fixture.kernel, initrd: fixture.initrd, append: fixture.append('fixture.usb', 'fixture.net') },
          secretImage,
          network: { forwards: [{ guestAddress: '10.0.2.100', guestPort: 80, hostPort: port }] },
          serialLog,
          onSerial: (text) => streamed.push(text),
          timeoutMs: BOOT_TIMEOUT_MS,
        });
        expect(result.reason).toBe('poweroff');
        expect(result.exitCode).toBe(0);
        expect(result.serial).toContain('fixture: guest up');
        expect(result.serial).toContain('fixture: powering off');
        expect(result.serial).toMatch(/fixture: sda at \S*usb/);
        expect(result.serial).toMatch(/fixture: findfs \/dev\/sda\r?\n/);
        expect(result.serial).toContain('fixture: fetch 1 [answer-1]');
        expect(result.serial).toContain('fixture: fetch 2 [answer-2]');
        expect(requests).toBe(2);
        expect(streamed.join('')).toBe(result.serial);
        expect(readFileSync(serialLog, 'utf8')).toBe(result.serial);
      } finally {
        server.close();
      }
    },
    BOOT_TIMEOUT_MS + 30_000,
  );

  it(
    'stops as soon as the serial output matches, with no network device unless asked',
    async () => {
      const result = await bootInQemu({
        kernel: { image: fixture.kernel, initrd: fixture.initrd, append: fixture.append('fixture.hang') },
        until: /fixture: hanging/,
        timeoutMs: BOOT_TIMEOUT_MS,
      });
      expect(result.reason).toBe('matched');
      expect(result.exitCode).toBeNull();
      expect(result.serial).toContain('fixture: net devices lo \r\n');
      expect(result.serial).not.toContain('fixture: powering off');
    },
    BOOT_TIMEOUT_MS + 30_000,
  );

  it(
    'boots through UEFI firmware (OVMF) when asked',
    async () => {
      const result = await bootInQemu({
        kernel: { image: fixture.kernel, initrd: fixture.initrd, append: fixture.append() },
        uefi: true,
        timeoutMs: BOOT_TIMEOUT_MS,
      });
      expect(result.reason).toBe('poweroff');
      expect(result.serial).toContain('fixture: powering off');
      // The kernel saw EFI: OVMF, not SeaBIOS, started it.
      expect(result.serial).toContain('fixture: efi yes');
    },
    BOOT_TIMEOUT_MS + 30_000,
  );

  it('kills QEMU when the time is up', async () => {
    const result = await bootInQemu({
      kernel: { image: fixture.kernel, initrd: fixture.initrd, append: fixture.append('fixture.hang') },
      timeoutMs: 2_000,
    });
    expect(result.reason).toBe('timeout');
    expect(result.exitCode).toBeNull();
    expect(result.serial).not.toContain('fixture: powering off');
  });

  it(
    'ends the boot when its signal aborts',
    async () => {
      const controller = new AbortController();
      const boot = bootInQemu({
        kernel: { image: fixture.kernel, initrd: fixture.initrd, append: fixture.append('fixture.hang') },
        timeoutMs: BOOT_TIMEOUT_MS,
        onSerial: () => controller.abort(),
        signal: controller.signal,
      });
      await expect(boot).rejects.toBeInstanceOf(QemuAbortedError);
    },
    BOOT_TIMEOUT_MS,
  );

  it('refuses a missing ISO in one line, before starting QEMU', async () => {
    await expect(bootInQemu({ iso: join(dir, 'missing.iso'), timeoutMs: 1_000 })).rejects.toMatchObject({
      code: 'FILE_NOT_FOUND',
      message: `ISO image not found: ${join(dir, 'missing.iso')}`,
    });
  });

  it(
    'attaches extra raw disks as virtio block devices, read-write or read-only, and gives the NIC the MAC asked for',
    async () => {
      const guest = await scriptedGuest(dir, 'disks', [
        'echo "disks: mac $(cat /sys/class/net/eth0/address)"',
        'echo "disks: vda ro=$(cat /sys/block/vda/ro) vdb ro=$(cat /sys/block/vdb/ro)"',
        'echo "disks: vdb says $(head -c 9 /dev/vdb)"',
        'printf "guest-was-here" | dd of=/dev/vda conv=notrunc 2>/dev/null && sync && echo "disks: vda written"',
      ]);
      const writable = join(dir, 'writable.img');
      const readOnly = join(dir, 'readonly.img');
      writeFileSync(writable, Buffer.alloc(1024 * 1024));
      writeFileSync(readOnly, Buffer.concat([Buffer.from('read-only'), Buffer.alloc(1024 * 1024 - 9)]));

      const result = await bootInQemu({
        kernel: { image: guest.kernel, initrd: guest.initrd, append: guest.append() },
        drives: [{ file: writable }, { file: readOnly, readonly: true }],
        network: { forwards: [], mac: '52:54:00:ab:cd:ef' },
        timeoutMs: BOOT_TIMEOUT_MS,
      });
      expect(result.reason, result.serial).toBe('poweroff');
      expect(result.serial).toContain('disks: mac 52:54:00:ab:cd:ef');
      expect(result.serial).toContain('disks: vda ro=0 vdb ro=1');
      expect(result.serial).toContain('disks: vdb says read-only');
      expect(result.serial).toContain('disks: vda written');
      expect(readFileSync(writable).subarray(0, 14).toString()).toBe('guest-was-here');
    },
    BOOT_TIMEOUT_MS + 30_000,
  );

  it('refuses a NIC MAC that is not one, and a missing disk, before starting QEMU', async () => {
    const kernel = { image: fixture.kernel, initrd: fixture.initrd, append: '' };
    await expect(bootInQemu({ kernel, network: { forwards: [], mac: '52:54:00:zz:00:01' }, timeoutMs: 1_000 })).rejects.toMatchObject({
      code: 'BAD_QEMU_OPTION',
      message: 'qemu: not a MAC address: 52:54:00:zz:00:01',
    });
    await expect(bootInQemu({ kernel, drives: [{ file: join(dir, 'missing.img') }], timeoutMs: 1_000 })).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
  });

  it('reports what QEMU itself rejects', async () => {
    const notAKernel = join(dir, 'not-a-kernel');
    writeFileSync(notAKernel, 'plain text');
    await expect(bootInQemu({ kernel: { image: notAKernel, initrd: fixture.initrd, append: '' }, timeoutMs: 60_000 })).rejects.toMatchObject({
      code: 'TOOL_FAILED',
      message: expect.stringMatching(/^qemu-system-x86_64 failed: .+/),
    });
  });
});
