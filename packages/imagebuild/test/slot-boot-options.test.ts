/** bootInQemu's boot-disk option is checked before QEMU starts. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootInQemu, QemuOptionError } from '../src/qemu.js';

describe('bootInQemu disk option', () => {
  let dir: string;
  let disk: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'psyops-qemu-disk-'));
    disk = join(dir, 'disk.img');
    writeFileSync(disk, Buffer.alloc(1024 * 1024));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('takes exactly one of an ISO, a kernel and a disk', async () => {
    const kernel = { image: disk, initrd: disk, append: '' };
    await expect(bootInQemu({ disk, kernel, timeoutMs: 1_000 })).rejects.toMatchObject({
      code: 'BAD_QEMU_OPTION',
      message: 'qemu: give exactly one of an ISO, a kernel and a disk to boot, not kernel and disk',
    });
    await expect(bootInQemu({ disk, iso: disk, timeoutMs: 1_000 })).rejects.toBeInstanceOf(QemuOptionError);
    await expect(bootInQemu({ timeoutMs: 1_000 })).rejects.toMatchObject({
      code: 'BAD_QEMU_OPTION',
      message: 'qemu: give exactly one of an ISO, a kernel and a disk to boot',
    });
  });

  it('refuses a missing boot disk in one line, before starting QEMU', async () => {
    const missing = join(dir, 'missing.img');
    await expect(bootInQemu({ disk: missing, uefi: true, allowReboot: true, timeoutMs: 1_000 })).rejects.toMatchObject({
      code: 'FILE_NOT_FOUND',
      message: `boot disk image not found: ${missing}`,
    });
  });
});
