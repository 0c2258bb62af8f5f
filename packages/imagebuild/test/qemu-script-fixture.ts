/**
 * Tiny guests with an /init of the test's own: the host's Debian kernel, the static busybox and the
 * virtio modules, then the given shell lines (busybox sh; nc, ping, ip and friends are there).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { type BootFixture, hostKernel, writeInitramfs } from './qemu-fixture.js';

const MODULES = ['virtio_pci', 'virtio_net', 'virtio_blk'];

/** A guest whose /init mounts the basics, loads the virtio modules, prints `guest: cmdline …` and runs `script`. */
export async function scriptedGuest(dir: string, name: string, script: string[]): Promise<BootFixture> {
  const { image, release } = await hostKernel();
  const tree = join(dir, `${name}-initramfs`);
  mkdirSync(join(tree, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', join(tree, 'bin/busybox'));
  chmodSync(join(tree, 'bin/busybox'), 0o755);
  const modules = [
    ...new Set(
      execFileSync('modprobe', ['-a', '--show-depends', '--set-version', release, ...MODULES], { encoding: 'utf8' })
        .split('\n')
        .flatMap((line) => /^insmod (\S+)/.exec(line)?.[1] ?? []),
    ),
  ];
  for (const module of modules) {
    mkdirSync(join(tree, dirname(module)), { recursive: true });
    copyFileSync(module, join(tree, module));
  }
  const init = [
    '#!/bin/busybox sh',
    '/bin/busybox --install -s /bin',
    'export PATH=/bin',
    'mkdir -p /proc /sys /dev /tmp && mount -t proc proc /proc && mount -t sysfs sysfs /sys && mount -t devtmpfs devtmpfs /dev',
    'exec </dev/console >/dev/console 2>&1',
    ...modules.map((module) => `insmod ${module} 2>/dev/null`),
    'echo "guest: cmdline $(cat /proc/cmdline)"',
    ...script,
    'poweroff -f',
  ].join('\n');
  writeFileSync(join(tree, 'init'), `${init}\n`, { mode: 0o755 });
  const initrd = join(dir, `${name}-initramfs.gz`);
  await writeInitramfs(tree, initrd);
  return { kernel: image, initrd, append: (...words) => ['console=ttyS0,115200', 'panic=-1', 'quiet', ...words].join(' ') };
}

/** Guest lines: a TCP server on PORT that sends `guest-token`, prints what it received, then powers off. */
export function publishScript(port: number): string[] {
  return [
    'ip link set lo up && ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0',
    'echo "guest: eth0 $(cat /sys/class/net/eth0/address)"',
    'echo "guest: vda ro=$(cat /sys/block/vda/ro 2>/dev/null)"',
    '[ -e /dev/vda ] && printf "guest-was-here" | dd of=/dev/vda conv=notrunc 2>/dev/null && sync && echo "guest: vda written"',
    'echo "guest: listening"',
    `echo guest-token | nc -l -p ${port} > /tmp/got`,
    'echo "guest: got [$(cat /tmp/got)]"',
  ];
}

/**
 * Connects to 127.0.0.1:`port` until a connection answers: sends `message`, half-closes and returns
 * what came back. QEMU's user network accepts a forwarded connection before the guest does and
 * closes it empty when the guest refuses, so an empty answer means "try again".
 */
export async function exchange(port: number, message: string, deadlineMs: number): Promise<string> {
  const deadline = Date.now() + deadlineMs;
  while (Date.now() < deadline) {
    const answer = await new Promise<string>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      let received = '';
      socket.setTimeout(10_000, () => socket.destroy());
      socket.on('connect', () => socket.end(`${message}\n`));
      socket.on('data', (chunk: Buffer) => {
        received += chunk.toString();
      });
      socket.on('error', () => {});
      socket.on('close', () => resolve(received));
    });
    if (answer) return answer;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`nothing answered on 127.0.0.1:${port} within ${deadlineMs} ms`);
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it, then it was closed). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
