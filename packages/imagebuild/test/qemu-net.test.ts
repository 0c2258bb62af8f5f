/**
 * bootInQemu's networks for nodes that serve: ports published from the host into the guest, links
 * shared by several guests, and what is checked before QEMU starts. Real QEMU, tiny guests.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootInQemu, linkEndpoint, linkMac, NotAnIsoError, QemuOptionError } from '../src/qemu.js';
import { exchange, freePort, publishScript, scriptedGuest } from './qemu-script-fixture.js';

const BOOT_TIMEOUT_MS = 150_000;

describe('bootInQemu networks', () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'psyops-qemu-net-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it(
    'publishes a guest TCP port on the host, on the restricted user network, and adds no_timer_check under TCG',
    async () => {
      const guest = await scriptedGuest(dir, 'publish', publishScript(8080));
      const hostPort = await freePort();
      let answer: Promise<string> | undefined;
      let serial = '';
      const result = await bootInQemu({
        kernel: { image: guest.kernel, initrd: guest.initrd, append: guest.append() },
        network: { publish: [{ hostPort, guestPort: 8080 }] },
        // The host connects once the guest listens.
        onSerial: (text) => {
          serial += text;
          if (!answer && serial.includes('guest: listening')) answer = exchange(hostPort, 'host-token', 60_000);
        },
        timeoutMs: BOOT_TIMEOUT_MS,
      });
      expect(result.reason, result.serial).toBe('poweroff');
      expect(await answer).toBe('guest-token\n');
      expect(result.serial).toContain('guest: got [host-token]');
      expect(result.serial).toMatch(/guest: cmdline [^\n]*quiet no_timer_check\r?\n/);
    },
    BOOT_TIMEOUT_MS + 30_000,
  );

  it(
    'puts two guests on one link: they reach each other over their link NICs, whose MACs derive from --mac and the name',
    async () => {
      const name = `test-${process.pid}-${Date.now()}`;
      // A: user network (eth0, its own MAC) and the link (eth1). B: only the link (eth0), no MAC of its own.
      const a = await scriptedGuest(dir, 'link-a', [
        'ip link set lo up && ip link set eth1 up && ip addr add 192.168.77.1/24 dev eth1',
        'echo "link-a: eth0 $(cat /sys/class/net/eth0/address) eth1 $(cat /sys/class/net/eth1/address)"',
        'tries=0; until ping -c 1 -W 1 192.168.77.2 >/dev/null 2>&1; do tries=$((tries + 1)); [ $tries -ge 120 ] && break; done',
        'echo "link-a: ping after $tries failures"',
        'tries=0; until echo hello-over-the-link | nc 192.168.77.2 7777; do tries=$((tries + 1)); [ $tries -ge 60 ] && break; sleep 1; done',
        'echo "link-a: sent"',
      ]);
      const b = await scriptedGuest(dir, 'link-b', [
        'ip link set lo up && ip link set eth0 up && ip addr add 192.168.77.2/24 dev eth0',
        'echo "link-b: nics $(ls /sys/class/net | tr "\\n" " ")"',
        'echo "link-b: eth0 $(cat /sys/class/net/eth0/address)"',
        'nc -l -p 7777 </dev/null >/tmp/got',
        'echo "link-b: got [$(cat /tmp/got)]"',
      ]);
      const [resultA, resultB] = await Promise.all([
        bootInQemu({
          kernel: { image: a.kernel, initrd: a.initrd, append: a.append() },
          network: { mac: '52:54:00:00:00:0a' },
          links: [{ name }],
          timeoutMs: BOOT_TIMEOUT_MS,
        }),
        bootInQemu({ kernel: { image: b.kernel, initrd: b.initrd, append: b.append() }, links: [{ name }], timeoutMs: BOOT_TIMEOUT_MS }),
      ]);
      expect(resultA.reason, resultA.serial).toBe('poweroff');
      expect(resultB.reason, resultB.serial).toBe('poweroff');
      expect(resultA.serial).toContain(`link-a: eth0 52:54:00:00:00:0a eth1 ${linkMac('52:54:00:00:00:0a', name)}`);
      expect(resultA.serial).toMatch(/link-a: ping after \d+ failures/);
      expect(resultA.serial).not.toContain('link-a: ping after 120 failures');
      expect(resultB.serial).toContain('link-b: nics eth0 lo ');
      expect(resultB.serial).toContain('link-b: got [hello-over-the-link]');
      const macB = /link-b: eth0 (\S+)/.exec(resultB.serial)?.[1];
      expect(macB).toMatch(/^52:54(:[0-9a-f]{2}){4}$/);
      expect(macB).not.toBe(linkMac('52:54:00:00:00:0a', name));
    },
    2 * BOOT_TIMEOUT_MS + 30_000,
  );

  it('derives link endpoints and MACs from the names, the same every time', () => {
    expect(linkEndpoint('cluster')).toEqual(linkEndpoint('cluster'));
    expect(linkEndpoint('cluster')).not.toEqual(linkEndpoint('cluster2'));
    const { group, port } = linkEndpoint('cluster');
    expect(group).toMatch(/^239\.255\.\d{1,3}\.\d{1,3}$/);
    expect(port).toBeGreaterThanOrEqual(20000);
    expect(port).toBeLessThan(30000);
    expect(linkMac('52:54:00:00:00:01', 'cluster')).toBe(linkMac('52:54:00:00:00:01', 'cluster'));
    expect(linkMac('52:54:00:00:00:01', 'cluster')).not.toBe(linkMac('52:54:00:00:00:02', 'cluster'));
    expect(linkMac('52:54:00:00:00:01', 'cluster')).not.toBe(linkMac('52:54:00:00:00:01', 'other'));
    expect(linkMac(undefined, 'cluster')).not.toBe(linkMac(undefined, 'cluster'));
  });

  it('refuses bad MACs, ports, link names, a port in use and a file that is not an ISO, before starting QEMU', async () => {
    const kernel = { image: '/nonexistent/kernel', initrd: '/nonexistent/initrd', append: '' };
    const refused = (options: Partial<Parameters<typeof bootInQemu>[0]>) => bootInQemu({ kernel, timeoutMs: 1_000, ...options });
    await expect(refused({ network: { mac: '53:54:00:00:00:01' } })).rejects.toThrow(QemuOptionError);
    await expect(refused({ network: { publish: [{ hostPort: 0, guestPort: 80 }] } })).rejects.toThrow(QemuOptionError);
    await expect(
      refused({
        network: {
          publish: [
            { hostPort: 8080, guestPort: 80 },
            { hostPort: 8080, guestPort: 81 },
          ],
        },
      }),
    ).rejects.toThrow('qemu: host port 8080 is published twice');
    await expect(refused({ links: [{ name: '-x' }] })).rejects.toThrow(QemuOptionError);
    await expect(refused({ links: [{ name: 'a' }, { name: 'a' }] })).rejects.toThrow('qemu: link a is given twice');

    // These get past the option checks: the files must be real.
    const guest = await scriptedGuest(dir, 'refused', []);
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const { port } = busy.address() as AddressInfo;
    try {
      await expect(
        bootInQemu({
          kernel: { image: guest.kernel, initrd: guest.initrd, append: '' },
          network: { publish: [{ hostPort: port, guestPort: 80 }] },
          timeoutMs: 1_000,
        }),
      ).rejects.toThrow(`qemu: host port 127.0.0.1:${port} is in use`);
    } finally {
      busy.close();
    }
    const notIso = join(dir, 'not.iso');
    writeFileSync(notIso, Buffer.alloc(64 * 1024));
    await expect(bootInQemu({ iso: notIso, timeoutMs: 1_000 })).rejects.toThrow(NotAnIsoError);
    writeFileSync(notIso, 'short');
    await expect(bootInQemu({ iso: notIso, timeoutMs: 1_000 })).rejects.toMatchObject({ code: 'NOT_AN_ISO' });
    // The magic is all it takes to get past the check: QEMU starts (and SeaBIOS finds nothing to boot).
    const magic = Buffer.alloc(64 * 1024);
    magic.write('CD001', 32769, 'latin1');
    writeFileSync(notIso, magic);
    expect((await bootInQemu({ iso: notIso, timeoutMs: 2_000 })).reason).toBe('timeout');
  });
});
