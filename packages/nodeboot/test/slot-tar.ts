/** An update tar as build-disk writes it (a copy of siteapi's test helper: ustar, slot.json first). */
import { createHash } from 'node:crypto';
import type { VolumeMounter } from '../src/slot-update/volumes.js';

function entry(name: string, content: Buffer, mtime: number): Buffer {
  const header = Buffer.alloc(512);
  const octal = (value: number, length: number) => value.toString(8).padStart(length - 1, '0');
  header.write(name, 0, 100, 'latin1');
  header.write(octal(0o644, 8), 100);
  header.write(octal(0, 8), 108);
  header.write(octal(0, 8), 116);
  header.write(octal(content.length, 12), 124);
  header.write(octal(mtime, 12), 136);
  header.write('        ', 148);
  header.write('0', 156);
  header.write('ustar\u000000', 257, 'latin1');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'latin1');
  return Buffer.concat([header, content, Buffer.alloc((512 - (content.length % 512)) % 512)]);
}

export function slotFilesOf(release: string, arch = 'x86_64'): Map<string, Buffer> {
  return new Map<string, Buffer>([
    ['.psyopsOS-release', Buffer.from(`${release} ${arch}\n`)],
    ['boot/initramfs-virt', Buffer.from(`initramfs of ${release}`)],
    ['boot/modloop-virt', Buffer.from('modloop')],
    ['boot/rootfs.squashfs', Buffer.alloc(5000, 3)],
    ['boot/vmlinuz-virt', Buffer.from(`kernel of ${release}`)],
  ]);
}

export function slotTar(release: string, arch = 'x86_64'): Buffer {
  const files = slotFilesOf(release, arch);
  const sorted = [...files.keys()].sort();
  const slot = {
    format: 'psyops-slot/1',
    version: release,
    arch,
    kernel: '6.12.1-0-virt',
    alpine: '3.22.2',
    kernelFlavor: 'virt',
    files: sorted.map((path) => ({ path, size: files.get(path)!.length, sha256: createHash('sha256').update(files.get(path)!).digest('hex') })),
  };
  const mtime = 1_700_000_000;
  return Buffer.concat([
    entry('psyopsOS-slot.json', Buffer.from(`${JSON.stringify(slot)}\n`), mtime),
    entry('psyopsOS-slot.json.minisig', Buffer.from('untrusted comment: test\n'), mtime),
    ...sorted.map((path) => entry(path, files.get(path)!, mtime)),
    Buffer.alloc(1024),
  ]);
}

/** Volumes by label as directories; each mount recorded. */
export function dirMounter(volumes: Record<string, string>, log: string[]): VolumeMounter {
  return {
    async mount(label, type, mode) {
      const dir = volumes[label];
      if (dir === undefined) throw new Error(`no volume ${label}`);
      log.push(`mount ${type} ${label} ${mode}`);
      return { dir, unmount: async () => void log.push(`umount ${label}`) };
    },
  };
}
