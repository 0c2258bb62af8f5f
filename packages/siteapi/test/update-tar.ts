import { createHash } from 'node:crypto';

/** One ustar header + content, regular file, mode 0644, uid/gid 0 (the contract's update tar). */
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
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([header, content, padding]);
}

export interface SlotTarOptions {
  release: string;
  arch?: string;
  kernel?: string;
  alpine?: string;
  /** Replaces the psyopsOS-slot.json content (to make a bad one). */
  slotJson?: string;
  /** Another first entry instead of psyopsOS-slot.json. */
  firstName?: string;
}

/** An update tar as build-disk writes it: psyopsOS-slot.json, its signature, then the slot's files by path. */
export function slotTar(options: SlotTarOptions): Buffer {
  const arch = options.arch ?? 'x86_64';
  const files = new Map<string, Buffer>([
    ['.psyopsOS-release', Buffer.from(`${options.release} ${arch}\n`)],
    ['boot/initramfs-virt', Buffer.from('initramfs')],
    ['boot/modloop-virt', Buffer.from('modloop')],
    ['boot/rootfs.squashfs', Buffer.alloc(5000, 3)],
    ['boot/vmlinuz-virt', Buffer.from(`kernel of ${options.release}`)],
  ]);
  const sorted = [...files.keys()].sort();
  const slot = {
    format: 'psyops-slot/1',
    version: options.release,
    arch,
    kernel: options.kernel ?? '6.12.1-0-virt',
    alpine: options.alpine ?? '3.22.2',
    kernelFlavor: 'virt',
    files: sorted.map((path) => ({ path, size: files.get(path)!.length, sha256: createHash('sha256').update(files.get(path)!).digest('hex') })),
  };
  const mtime = 1_700_000_000;
  return Buffer.concat([
    entry(options.firstName ?? 'psyopsOS-slot.json', Buffer.from(options.slotJson ?? `${JSON.stringify(slot)}\n`), mtime),
    entry('psyopsOS-slot.json.minisig', Buffer.from('untrusted comment: test\n'), mtime),
    ...sorted.map((path) => entry(path, files.get(path)!, mtime)),
    Buffer.alloc(1024),
  ]);
}
