/** Boots an image (or a kernel + initramfs) in QEMU, headless, and watches its serial console. */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { copyFile, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertReadableFile, fileAccessError, PsyopsError, ToolFailedError } from '@psyops/core';
import { requireHostFile, requireTools } from './tools.js';

export interface QemuForward {
  /** Address the guest connects to, inside QEMU's user network (e.g. 10.0.2.100). */
  guestAddress: string;
  guestPort: number;
  /** Port on the host's 127.0.0.1 that each guest connection is relayed to. */
  hostPort: number;
}

export interface QemuPublish {
  /** Port on the host's 127.0.0.1; each connection to it is relayed to `guestPort` of the guest (10.0.2.15). */
  hostPort: number;
  guestPort: number;
}

export interface QemuDrive {
  /** Raw disk image. */
  file: string;
  /** Attached read-only (default read-write: the guest's writes land in the file). */
  readonly?: boolean;
}

export interface QemuNetwork {
  /** Guest→host: connections of the guest to `guestAddress:guestPort` reach 127.0.0.1:`hostPort` (guestfwd). */
  forwards?: QemuForward[];
  /** Host→guest: connections to 127.0.0.1:`hostPort` reach the guest's TCP `guestPort` (hostfwd). */
  publish?: QemuPublish[];
  /** The NIC's MAC (default QEMU's own 52:54:00:12:34:56). */
  mac?: string;
}

export interface QemuLink {
  /** Guests started with the same link name share one Ethernet segment (on this host only). */
  name: string;
  /** This guest's MAC on the link (default `linkMac(network.mac, name)`). */
  mac?: string;
}

export interface QemuBootOptions {
  /** ISO image, attached as a CD-ROM and booted from. Exactly one of `iso`, `kernel` and `disk` is given. */
  iso?: string;
  /**
   * Direct kernel boot instead of an ISO (used by tests). Under TCG `no_timer_check` is added to
   * `append` when it is not there: on a loaded host the kernel's timer check can fail in a TCG guest.
   */
  kernel?: { image: string; initrd: string; append: string };
  /**
   * A raw disk image to boot from (the disk image's GRUB, with `uefi`): attached read-write as a
   * virtio block device with bootindex 0, so GRUB's `save_env` and everything the guest writes land
   * in the file. It is /dev/vda in the guest; `drives` follow it (/dev/vdb…).
   */
  disk?: string;
  /** Raw disk image attached read-only as a USB mass-storage device (qemu-xhci + usb-storage). */
  secretImage?: string;
  /** Further raw disks, attached as virtio block devices (/dev/vda, /dev/vdb… in the guest, after the boot `disk`), in order. */
  drives?: QemuDrive[];
  /**
   * Boot with OVMF (UEFI) instead of SeaBIOS. Each call starts from a fresh copy of OVMF's variable
   * store, which lives for the whole QEMU process: a guest reboot (`allowReboot`) keeps its NVRAM.
   */
  uefi?: boolean;
  /**
   * Default false: QEMU runs with -no-reboot, so a guest reboot (or a panic with panic=N) ends it
   * like a power-off. True: a reboot resets the guest inside the same QEMU process (the firmware and
   * a direct kernel boot start again, disks and NVRAM keep what was written) and the serial output
   * goes on in the same log, so one run can watch boot, update, reboot, trial and rollback; only a
   * guest power-off, `until`, the timeout or the signal end it.
   */
  allowReboot?: boolean;
  /** Default tcg. KVM is never chosen automatically: /dev/kvm can exist where KVM does not work. */
  accel?: 'tcg' | 'kvm';
  /** Guest memory (default 1024 MiB). */
  memoryMiB?: number;
  /** QEMU is killed after this long. */
  timeoutMs: number;
  /**
   * Stop as soon as the serial output so far matches. Output arrives in pieces: a pattern that ends
   * in `[^\n]*\n` waits for the whole line.
   */
  until?: RegExp;
  /** File the serial output is written to as it arrives. */
  serialLog?: string;
  onSerial?(text: string): void;
  /** Bytes from this stream are sent to the guest's serial port (an interactive console). */
  serialInput?: NodeJS.ReadableStream;
  /**
   * User-mode network (restrict=on: the guest reaches nothing but its forwards) on the first virtio
   * NIC (eth0); no user network when absent.
   */
  network?: QemuNetwork;
  /** One more virtio NIC per link, after the user network's, in order (eth1… or eth0… without one). */
  links?: QemuLink[];
  signal?: AbortSignal;
}

export interface QemuBootResult {
  /** poweroff: QEMU ended by itself (guest power-off; without `allowReboot` also a reboot or panic, as -no-reboot ends QEMU on those). */
  reason: 'poweroff' | 'matched' | 'timeout';
  /** QEMU's exit code; null when it was killed. */
  exitCode: number | null;
  serial: string;
  durationMs: number;
}

/** The boot was cancelled through its AbortSignal. */
export class QemuAbortedError extends PsyopsError {
  override readonly code = 'INTERRUPTED';
}

/**
 * An option of the boot cannot be used as given (not exactly one of iso, kernel and disk, a bad MAC,
 * port or link name, a port in use); found before QEMU starts.
 */
export class QemuOptionError extends PsyopsError {
  override readonly code = 'BAD_QEMU_OPTION';
}

/** The file to boot as an ISO is not an ISO 9660 image; found before QEMU starts. */
export class NotAnIsoError extends PsyopsError {
  override readonly code = 'NOT_AN_ISO';
}

// Each guest connection spawns one relay (QEMU runs the guestfwd command per connection), with the
// connection as its stdin and stdout. Node instead of socat: no extra host tool.
const RELAY_SCRIPT = `import { connect } from 'node:net';
const upstream = connect(Number(process.argv[2]), '127.0.0.1');
process.stdin.pipe(upstream);
upstream.pipe(process.stdout, { end: false });
upstream.on('end', () => process.stdout.write('', () => process.exit(0)));
upstream.on('error', () => process.exit(1));
`;

const KILL_GRACE_MS = 5_000;
const STDERR_LIMIT = 64 * 1024;
const MAC_PATTERN = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;
const LINK_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** ISO 9660: the first volume descriptor is at sector 16 (of 2048 bytes); "CD001" follows its type byte. */
const ISO9660_MAGIC_OFFSET = 16 * 2048 + 1;

function assertMac(mac: string, what: string): string {
  if (!MAC_PATTERN.test(mac)) throw new QemuOptionError(`qemu: not a MAC address: ${mac}`);
  // The least significant bit of the first byte marks group (multicast) addresses: no NIC has one.
  if (Number.parseInt(mac.slice(0, 2), 16) & 1) throw new QemuOptionError(`qemu: ${what} must be a unicast MAC (first byte even): ${mac}`);
  return mac.toLowerCase();
}

function assertPort(port: number, what: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new QemuOptionError(`qemu: ${what} must be a port from 1 to 65535, got ${port}`);
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/**
 * Where the guests on link `name` meet: a multicast group (239.255.0.0/16, local scope) and a UDP port
 * (20000–29999, below Linux's ephemeral range), both from a hash of the name, used on 127.0.0.1 only.
 */
export function linkEndpoint(name: string): { group: string; port: number } {
  if (!LINK_NAME_PATTERN.test(name)) {
    throw new QemuOptionError(`qemu: a link name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit, got ${JSON.stringify(name)}`);
  }
  const hash = digest(`psyops-link\0${name}`);
  return { group: `239.255.${hash[0]}.${hash[1]}`, port: 20000 + (hash.readUInt16BE(2) % 10000) };
}

/**
 * A guest's MAC on link `name`: 52:54 (locally administered, as QEMU's own) and four bytes of a hash of
 * the guest's `mac` and the link name, so guests with different MACs get different link MACs. Without
 * a `mac` the base is random, so two guests never collide.
 */
export function linkMac(mac: string | undefined, name: string): string {
  const base = mac === undefined ? randomBytes(6).toString('hex') : assertMac(mac, 'the base MAC');
  const hash = digest(`psyops-link-mac\0${base}\0${name}`);
  return ['52', '54', ...[...hash.subarray(0, 4)].map((byte) => byte.toString(16).padStart(2, '0'))].join(':');
}

interface NetPlan {
  forwards: QemuForward[];
  publish: QemuPublish[];
  mac: string | undefined;
  links: { name: string; mac: string; group: string; port: number }[];
}

/** Checks every network option before anything starts. */
function planNetwork(options: QemuBootOptions): NetPlan | undefined {
  const { network, links = [] } = options;
  if (!network && links.length === 0) return undefined;
  const forwards = network?.forwards ?? [];
  const publish = network?.publish ?? [];
  for (const forward of forwards) {
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(forward.guestAddress)) throw new QemuOptionError(`qemu: not an IPv4 address: ${forward.guestAddress}`);
    assertPort(forward.guestPort, 'a forward guest port');
    assertPort(forward.hostPort, 'a forward host port');
  }
  const hostPorts = new Set<number>();
  for (const entry of publish) {
    assertPort(entry.hostPort, 'a published host port');
    assertPort(entry.guestPort, 'a published guest port');
    if (hostPorts.has(entry.hostPort)) throw new QemuOptionError(`qemu: host port ${entry.hostPort} is published twice`);
    hostPorts.add(entry.hostPort);
  }
  const mac = network?.mac === undefined ? undefined : assertMac(network.mac, 'the NIC');
  // Without a MAC of its own, the link MACs of this guest share one random base.
  const base = mac ?? (links.length > 0 ? linkMac(undefined, 'base') : undefined);
  const names = new Set<string>();
  const planned = links.map((link) => {
    const endpoint = linkEndpoint(link.name);
    if (names.has(link.name)) throw new QemuOptionError(`qemu: link ${link.name} is given twice`);
    names.add(link.name);
    return { name: link.name, mac: link.mac !== undefined ? assertMac(link.mac, `the MAC on link ${link.name}`) : linkMac(base, link.name), ...endpoint };
  });
  const macs = new Set([...(mac ? [mac] : []), ...planned.map((link) => link.mac)]);
  if (macs.size !== (mac ? 1 : 0) + planned.length) throw new QemuOptionError('qemu: two NICs of the guest would have the same MAC');
  return { forwards: network ? forwards : [], publish, mac, links: planned };
}

/** Fails when a published host port cannot be listened on now (in use, or privileged). */
async function assertPortFree(port: number): Promise<void> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const why = error.code === 'EADDRINUSE' ? 'is in use' : `cannot be listened on (${error.code ?? error.message})`;
      reject(new QemuOptionError(`qemu: host port 127.0.0.1:${port} ${why}`));
    });
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve()));
  });
}

async function assertIso(path: string): Promise<void> {
  await assertReadableFile(path, 'ISO image');
  const magic = Buffer.alloc(5);
  try {
    const handle = await open(path, 'r');
    try {
      await handle.read(magic, 0, magic.length, ISO9660_MAGIC_OFFSET);
    } finally {
      await handle.close();
    }
  } catch (error) {
    throw fileAccessError(error, path, 'ISO image');
  }
  if (magic.toString('latin1') !== 'CD001') throw new NotAnIsoError(`not an ISO 9660 image (no "CD001" at byte ${ISO9660_MAGIC_OFFSET}): ${path}`);
}

function networkArgs(plan: NetPlan, relayPath: string, userNet: boolean): string[] {
  const args: string[] = [];
  if (userNet) {
    const netdev = ['user', 'id=net0', 'restrict=on'];
    for (const forward of plan.forwards) {
      // QEMU splits its options on commas and the command into words, shell-like (quotes allowed).
      const command = `'${process.execPath}' --no-warnings '${relayPath}' ${forward.hostPort}`;
      if (/[,']/.test(`${process.execPath}${relayPath}`)) throw new ToolFailedError(`qemu: cannot pass a path with a comma or quote to guestfwd: ${command}`);
      netdev.push(`guestfwd=tcp:${forward.guestAddress}:${forward.guestPort}-cmd:${command}`);
    }
    for (const entry of plan.publish) netdev.push(`hostfwd=tcp:127.0.0.1:${entry.hostPort}-:${entry.guestPort}`);
    args.push('-netdev', netdev.join(','), '-device', `virtio-net-pci,netdev=net0${plan.mac !== undefined ? `,mac=${plan.mac}` : ''}`);
  }
  for (const [index, link] of plan.links.entries()) {
    // Every guest on the link joins the same multicast group on the loopback interface: frames one
    // sends reach all the others (and only this host, as the group is joined on 127.0.0.1 alone).
    args.push(
      '-netdev',
      `socket,id=link${index},mcast=${link.group}:${link.port},localaddr=127.0.0.1`,
      '-device',
      `virtio-net-pci,netdev=link${index},mac=${link.mac}`,
    );
  }
  return args;
}

function qemuOptionPath(path: string): string {
  return path.replaceAll(',', ',,');
}

function withNoTimerCheck(append: string): string {
  return /(^|\s)no_timer_check(\s|$)/.test(append) ? append : `${append} no_timer_check`.trim();
}

/** Boots in QEMU under TCG (unless told otherwise) and returns how it ended and the serial output. */
export async function bootInQemu(options: QemuBootOptions): Promise<QemuBootResult> {
  const bootFrom = [options.iso !== undefined && 'iso', options.kernel !== undefined && 'kernel', options.disk !== undefined && 'disk'].filter(Boolean);
  if (bootFrom.length !== 1) {
    throw new QemuOptionError(`qemu: give exactly one of an ISO, a kernel and a disk to boot${bootFrom.length > 1 ? `, not ${bootFrom.join(' and ')}` : ''}`);
  }
  const plan = planNetwork(options);
  const accel = options.accel ?? 'tcg';
  const { 'qemu-system-x86_64': qemu } = await requireTools(['qemu-system-x86_64']);
  const ovmf = options.uefi ? { code: await requireHostFile('ovmfCode'), vars: await requireHostFile('ovmfVars') } : undefined;
  if (options.iso !== undefined) await assertIso(options.iso);
  if (options.kernel !== undefined) {
    await assertReadableFile(options.kernel.image, 'kernel');
    await assertReadableFile(options.kernel.initrd, 'initramfs');
  }
  if (options.disk !== undefined) await assertReadableFile(options.disk, 'boot disk image');
  if (options.secretImage !== undefined) await assertReadableFile(options.secretImage, 'secret image');
  for (const drive of options.drives ?? []) await assertReadableFile(drive.file, 'disk image');
  for (const entry of plan?.publish ?? []) await assertPortFree(entry.hostPort);
  options.signal?.throwIfAborted();

  const tempDir = await mkdtemp(join(tmpdir(), 'psyops-qemu-'));
  try {
    const args = [
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-vga',
      'std',
      '-serial',
      'stdio',
      '-monitor',
      'none',
      ...(options.allowReboot ? [] : ['-no-reboot']),
      '-accel',
      accel,
      '-m',
      String(options.memoryMiB ?? 1024),
    ];
    // QEMU's default TCG CPU lacks RDRAND, which every real x86-64 node has and the kernel seeds its
    // random generator from; without it the first getrandom() (node's start) waits a second or more.
    if (accel === 'tcg') args.push('-cpu', 'qemu64,+rdrand');
    if (ovmf) {
      const vars = join(tempDir, 'OVMF_VARS.fd');
      await copyFile(ovmf.vars, vars);
      args.push(
        '-drive',
        `if=pflash,format=raw,unit=0,readonly=on,file=${qemuOptionPath(ovmf.code)}`,
        '-drive',
        `if=pflash,format=raw,unit=1,file=${qemuOptionPath(vars)}`,
      );
    }
    if (options.iso !== undefined) {
      args.push('-drive', `media=cdrom,readonly=on,format=raw,if=ide,index=2,file=${qemuOptionPath(options.iso)}`, '-boot', 'order=d');
    } else if (options.kernel) {
      // A loaded host can stall a TCG guest long enough for the kernel to decide that the IO-APIC
      // timer does not work, and panic; the check proves nothing on emulated hardware.
      const append = accel === 'tcg' ? withNoTimerCheck(options.kernel.append) : options.kernel.append;
      args.push('-kernel', options.kernel.image, '-initrd', options.kernel.initrd, '-append', append);
    } else if (options.disk !== undefined) {
      // bootindex: the firmware's boot order (OVMF reads it through fw_cfg) names this disk first.
      args.push('-drive', `if=none,id=bootdisk,format=raw,file=${qemuOptionPath(options.disk)}`, '-device', 'virtio-blk-pci,drive=bootdisk,bootindex=0');
    }
    if (options.secretImage !== undefined) {
      args.push(
        '-device',
        'qemu-xhci,id=xhci',
        '-drive',
        `if=none,id=secret,format=raw,readonly=on,file=${qemuOptionPath(options.secretImage)}`,
        '-device',
        'usb-storage,bus=xhci.0,drive=secret,removable=on',
      );
    }
    for (const [index, drive] of (options.drives ?? []).entries()) {
      args.push(
        '-drive',
        `if=none,id=disk${index},format=raw${drive.readonly ? ',readonly=on' : ''},file=${qemuOptionPath(drive.file)}`,
        '-device',
        `virtio-blk-pci,drive=disk${index}`,
      );
    }
    if (plan) {
      const relayPath = join(tempDir, 'relay.mjs');
      if (plan.forwards.length > 0) await writeFile(relayPath, RELAY_SCRIPT);
      args.push(...networkArgs(plan, relayPath, options.network !== undefined));
    }
    return await runQemu(qemu, args, options);
  } finally {
    await rm(tempDir, { recursive: true, force: true });
  }
}

function runQemu(qemu: string, args: string[], options: QemuBootOptions): Promise<QemuBootResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    // The relays inherit this environment and their stderr is the guest's connection: nothing
    // from NODE_OPTIONS (--inspect…) or a warning about NODE_EXTRA_CA_CERTS may reach it.
    const { NODE_OPTIONS: _options, NODE_EXTRA_CA_CERTS: _certs, ...env } = process.env;
    const child = spawn(qemu, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
    const decoder = new TextDecoder();
    const log: WriteStream | undefined = options.serialLog ? createWriteStream(options.serialLog) : undefined;
    let serial = '';
    let stderr = '';
    let stopReason: 'matched' | 'timeout' | 'aborted' | undefined;
    let failure: Error | undefined;

    const stop = (reason: 'matched' | 'timeout' | 'aborted') => {
      if (stopReason || child.exitCode !== null || child.signalCode !== null) return;
      stopReason = reason;
      child.kill('SIGTERM');
      // QEMU ends on SIGTERM; the grace period only covers a wedged process.
      setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS).unref();
    };
    const timer = setTimeout(() => stop('timeout'), options.timeoutMs);
    const onAbort = () => stop('aborted');
    options.signal?.addEventListener('abort', onAbort, { once: true });

    const take = (text: string) => {
      if (!text) return;
      serial += text;
      log?.write(text);
      options.onSerial?.(text);
      if (options.until) {
        options.until.lastIndex = 0; // a /g or /y expression would otherwise search from its last match
        if (options.until.test(serial)) stop('matched');
      }
    };
    child.stdout.on('data', (chunk: Buffer) => take(decoder.decode(chunk, { stream: true })));
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < STDERR_LIMIT) stderr += chunk.toString('utf8');
    });
    child.stdin.on('error', () => {}); // QEMU may exit before it reads anything
    // An interactive console: what arrives goes to the guest's serial port (QEMU's stdio chardev).
    const onInput = (chunk: Buffer | string) => {
      if (child.stdin.writable) child.stdin.write(chunk);
    };
    options.serialInput?.on('data', onInput);
    log?.on('error', (error) => {
      failure ??= error;
      stop('aborted');
    });
    child.on('error', (error) => {
      failure ??= new ToolFailedError(`qemu-system-x86_64 could not start: ${error.message}`, { cause: error });
      if (child.pid === undefined) {
        clearTimeout(timer);
        options.serialInput?.off('data', onInput);
        options.signal?.removeEventListener('abort', onAbort);
        log?.end();
        reject(failure);
      }
    });

    child.on('close', (exitCode) => {
      clearTimeout(timer);
      options.serialInput?.off('data', onInput);
      options.signal?.removeEventListener('abort', onAbort);
      take(decoder.decode());
      const finish = () => {
        const durationMs = Math.round(performance.now() - started);
        if (failure) return reject(failure);
        if (stopReason === 'aborted') return reject(new QemuAbortedError('the QEMU boot was cancelled'));
        if (stopReason) return resolve({ reason: stopReason, exitCode: null, serial, durationMs });
        if (exitCode !== 0) {
          const reason = stderr.trim().split('\n').find(Boolean) ?? `exit code ${exitCode}`;
          return reject(new ToolFailedError(`qemu-system-x86_64 failed: ${reason}`));
        }
        resolve({ reason: 'poweroff', exitCode, serial, durationMs });
      };
      if (log) log.end(finish);
      else finish();
    });
  });
}
