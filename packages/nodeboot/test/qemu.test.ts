import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
// imagebuild's QEMU runner (TCG, USB secret disk, restricted user network with guest forwards).
import { bootInQemu } from '../../imagebuild/src/qemu.js';
import type { NodeStatus } from '../src/index.js';
import { NODE, makeWorld, tempDir, type World } from './fixtures.js';

/**
 * The real bundle on a real Linux: a minimal initramfs (static busybox, the host's node, the
 * kernel modules for virtio-net, USB storage and ext4) whose /init runs
 * `node nodeboot.mjs postboot --print-status` with LinuxSystem, the secret image attached as a USB
 * disk and the site reachable only at 10.0.2.100:80.
 */

const run = promisify(execFile);
const BUNDLE = join(import.meta.dirname, '..', 'dist', 'nodeboot.mjs');
const KERNEL_VERSION = existsSync('/lib/modules') ? readdirSync('/lib/modules').sort().at(-1) : undefined;
const KERNEL = KERNEL_VERSION ? `/boot/vmlinuz-${KERNEL_VERSION}` : '';
const MODULES = ['virtio_pci', 'virtio_net', 'xhci_pci', 'usb_storage', 'sd_mod', 'crc32c_generic', 'ext4'];
const SITE_ADDRESS = '10.0.2.100';

const INIT = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /run /tmp /sbin /usr/sbin /var/log
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
for module in $(cat /modules.list); do insmod "$module" 2>/dev/null; done
# /dev/console is tty0 (the last console=): this script reports on the serial port itself, and
# nodeboot must find ttyS0 among the active consoles.
echo "qemu-test: postboot starting" > /dev/ttyS0
node /usr/lib/psyops/nodeboot.mjs postboot --print-status
echo "qemu-test: postboot exit $?" > /dev/ttyS0
echo "qemu-test: hostname $(hostname)" > /dev/ttyS0
echo "qemu-test: interfaces $(ls /sys/class/net | tr '\\n' ' ')" > /dev/ttyS0
poweroff -f
`;

// What busybox ifup's DHCP runs for each lease (the image's baselayout provides its own).
const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew) ip addr add "$ip/\${mask:-24}" dev "$interface"; [ -n "$router" ] && ip route add default via "\${router%% *}" dev "$interface"; echo "qemu-test: lease $ip on $interface" ;;
esac
exit 0
`;

async function buildInitramfs(dir: string, siteUrl: string): Promise<string> {
  const root = join(dir, 'root');
  const put = (path: string, data: string | Buffer, mode = 0o644) => {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), data);
    chmodSync(join(root, path), mode);
  };
  const copy = (from: string, to = from, mode = 0o755) => {
    mkdirSync(dirname(join(root, to)), { recursive: true });
    copyFileSync(realpathSync(from), join(root, to));
    chmodSync(join(root, to), mode);
  };
  put('init', INIT, 0o755);
  copy('/bin/busybox', '/bin/busybox');
  copy(process.execPath, '/usr/bin/node');
  const { stdout: ldd } = await run('ldd', [process.execPath], { timeout: 30_000 });
  for (const match of ldd.matchAll(/(\/\S+\.so[.\d]*)/g)) copy(match[1]!);
  copy(BUNDLE, '/usr/lib/psyops/nodeboot.mjs');
  put('etc/udhcpc/default.script', UDHCPC_SCRIPT, 0o755); // Debian's busybox looks here
  put('etc/psyopsOS/site.url', `${siteUrl}\n`);
  put('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n');
  put('etc/group', 'root:x:0:\n');
  put('etc/init.d/app', '#!/bin/sh\necho "qemu-test: app $1" > /dev/ttyS0\n', 0o755); // the service the node config starts
  const modules: string[] = [];
  for (const module of MODULES) {
    const { stdout } = await run('modprobe', ['--show-depends', '-S', KERNEL_VERSION!, module], { timeout: 30_000 });
    for (const [, path] of stdout.matchAll(/^insmod (\S+)/gm)) {
      if (modules.includes(path!)) continue;
      modules.push(path!);
      copy(path!, path!, 0o644);
    }
  }
  put('modules.list', `${modules.join('\n')}\n`);
  // Uncompressed: nothing to decompress under emulation.
  const initrd = join(dir, 'initrd.cpio');
  await run('sh', ['-c', `cd "${root}" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet > "${initrd}"`], {
    timeout: 120_000,
    maxBuffer: 1024 * 1024,
  });
  return initrd;
}

const FINISHED = /psyopsOS: postboot finished [^\r\n]*\r?\n[\s\S]*qemu-test: interfaces [^\r\n]*\r?\n/;

function statusLine(serial: string): NodeStatus {
  const match = /psyopsOS: status (\{[^\r\n]*\})/.exec(serial);
  if (!match) throw new Error(`no status line in the serial log:\n${serial.slice(-3000)}`);
  return JSON.parse(match[1]!) as NodeStatus;
}

describe.skipIf(!KERNEL_VERSION || !existsSync(KERNEL))('the bundle on a real kernel (QEMU, TCG)', () => {
  let world: World;
  let initrd: string;
  beforeAll(async () => {
    world = await makeWorld();
    initrd = await buildInitramfs(tempDir('qemu-initramfs'), `http://${SITE_ADDRESS}`);
  }, 180_000);

  const boot = (secretImage: string | undefined) =>
    bootInQemu({
      kernel: { image: KERNEL, initrd, append: 'console=ttyS0 console=tty0 panic=-1 quiet' },
      ...(secretImage ? { secretImage } : {}),
      network: { forwards: [{ guestAddress: SITE_ADDRESS, guestPort: 80, hostPort: world.server.port }] },
      memoryMiB: 1024,
      timeoutMs: 300_000,
      until: FINISHED,
    });

  it('mounts the USB secret volume, renames eth0 to psy0, gets DHCP and applies the signed config; degraded: this image has no sshd, nebula or k3s', async () => {
    const result = await boot(world.image);
    expect(result.reason, result.serial.slice(-3000)).toBe('matched');
    // On the serial console, once, though /dev/console (its stdout) is tty0.
    expect(result.serial.split('psyopsOS: postboot finished').length).toBe(2);
    // The volume and the config ask for what this minimal image lacks: honest status says so.
    expect(result.serial).toContain(`psyopsOS: postboot finished status=degraded hostname=${NODE} config=3 secret=mounted-ro`);
    expect(result.serial).toContain('qemu-test: postboot exit 2');
    expect(result.serial).toMatch(/qemu-test: interfaces .*psy0/);
    expect(result.serial).toContain(`qemu-test: hostname ${NODE}`); // the kernel's, set through /proc/sys/kernel/hostname
    const status = statusLine(result.serial);
    expect(status).toMatchObject({
      status: 'degraded',
      hostname: NODE,
      secret: 'mounted-ro',
      config: { version: 3, source: 'site', signature: 'verified' },
      k3s: 'not-installed',
    });
    expect(status.steps.map((s) => `${s.name}:${s.result}`)).toEqual([
      'secret:ok',
      'state:failed',
      'network:failed',
      'psynet:failed',
      'config:ok',
      'k3s:failed',
    ]);
    expect(status.problems).toEqual([
      expect.stringMatching(/^state: no volume labelled psyops-state: no downgrade protection /),
      expect.stringMatching(/^network: sshd is not installed in this image .*networking up$/),
      expect.stringMatching(/^psynet: nebula is not installed /),
      expect.stringMatching(/^k3s: k3s is not installed in this image \(config for k3s (agent|server) written\)$/),
    ]);
    expect(result.serial).toContain('qemu-test: app start'); // the config's service, started by /etc/init.d/app
    console.log(
      `QEMU start to postboot finished: ${result.durationMs} ms; node start-up and bundle loading: ${status.startupMs} ms; postboot: ${status.durationMs} ms`,
    );
    expect(status.startupMs).toBeGreaterThan(0);
  }, 420_000);

  it('without the secret volume: DHCP on eth0, status failed, exit 1, and it ends', async () => {
    const result = await boot(undefined);
    expect(result.reason, result.serial.slice(-3000)).toBe('matched');
    expect(result.serial).toContain('psyopsOS: postboot finished status=failed hostname=psyopsOS-unconfigured config=none secret=missing');
    expect(result.serial).toContain('qemu-test: postboot exit 1');
    expect(result.serial).toMatch(/qemu-test: interfaces .*eth0/);
    expect(result.serial).toContain('qemu-test: hostname psyopsOS-unconfigured');
    const status = statusLine(result.serial);
    expect(status.steps.map((s) => `${s.name}:${s.result}`)).toEqual([
      'secret:failed',
      'state:failed',
      'network:ok',
      'psynet:skipped',
      'config:skipped',
      'k3s:skipped',
    ]);
    expect(status.steps[2]!.reason).toMatch(/DHCP fallback on eth0; networking up/);
  }, 420_000);
});
