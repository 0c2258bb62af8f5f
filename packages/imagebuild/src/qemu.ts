/** Boots an image (or a kernel + initramfs) in QEMU, headless, and watches its serial console. */
import { spawn } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertReadableFile, PsyopsError } from '@psyops/core';
import { ToolFailedError } from '@psyops/core';
import { requireHostFile, requireTools } from './tools.js';

export interface QemuForward {
  /** Address the guest connects to, inside QEMU's user network (e.g. 10.0.2.100). */
  guestAddress: string;
  guestPort: number;
  /** Port on the host's 127.0.0.1 that each guest connection is relayed to. */
  hostPort: number;
}

export interface QemuDrive {
  /** Raw disk image. */
  file: string;
  /** Attached read-only (default read-write: the guest's writes land in the file). */
  readonly?: boolean;
}

export interface QemuBootOptions {
  /** ISO image, attached as a CD-ROM and booted from. */
  iso?: string;
  /** Direct kernel boot instead of an ISO (used by tests). */
  kernel?: { image: string; initrd: string; append: string };
  /** Raw disk image attached read-only as a USB mass-storage device (qemu-xhci + usb-storage). */
  secretImage?: string;
  /** Further raw disks, attached as virtio block devices (/dev/vda, /dev/vdb… in the guest), in order. */
  drives?: QemuDrive[];
  /** Boot with OVMF (UEFI) instead of SeaBIOS. */
  uefi?: boolean;
  /** Default tcg. KVM is never chosen automatically: /dev/kvm can exist where KVM does not work. */
  accel?: 'tcg' | 'kvm';
  /** Guest memory (default 1024 MiB). */
  memoryMiB?: number;
  /** QEMU is killed after this long. */
  timeoutMs: number;
  /** Stop as soon as the serial output so far matches. */
  until?: RegExp;
  /** File the serial output is written to as it arrives. */
  serialLog?: string;
  onSerial?(text: string): void;
  /**
   * User-mode network (restrict=on) with these guest→host forwards, on one virtio NIC whose MAC is
   * `mac` (default QEMU's own 52:54:00:12:34:56); no network device when absent.
   */
  network?: { forwards: QemuForward[]; mac?: string };
  signal?: AbortSignal;
}

export interface QemuBootResult {
  /** poweroff: QEMU ended by itself (guest power-off, reboot or panic, as -no-reboot ends QEMU on those). */
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

function networkArgs(forwards: readonly QemuForward[], relayPath: string, mac: string | undefined): string[] {
  const netdev = ['user', 'id=net0', 'restrict=on'];
  for (const forward of forwards) {
    // QEMU splits its options on commas and the command into words, shell-like (quotes allowed).
    const command = `'${process.execPath}' --no-warnings '${relayPath}' ${forward.hostPort}`;
    if (/[,']/.test(`${process.execPath}${relayPath}`)) throw new ToolFailedError(`qemu: cannot pass a path with a comma or quote to guestfwd: ${command}`);
    netdev.push(`guestfwd=tcp:${forward.guestAddress}:${forward.guestPort}-cmd:${command}`);
  }
  if (mac !== undefined && !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac)) throw new ToolFailedError(`qemu: not a MAC address: ${mac}`);
  return ['-netdev', netdev.join(','), '-device', `virtio-net-pci,netdev=net0${mac !== undefined ? `,mac=${mac}` : ''}`];
}

function qemuOptionPath(path: string): string {
  return path.replaceAll(',', ',,');
}

/** Boots in QEMU under TCG (unless told otherwise) and returns how it ended and the serial output. */
export async function bootInQemu(options: QemuBootOptions): Promise<QemuBootResult> {
  if ((options.iso === undefined) === (options.kernel === undefined)) {
    throw new ToolFailedError('qemu: give either an ISO or a kernel to boot, not both or neither');
  }
  const { 'qemu-system-x86_64': qemu } = await requireTools(['qemu-system-x86_64']);
  const ovmf = options.uefi ? { code: await requireHostFile('ovmfCode'), vars: await requireHostFile('ovmfVars') } : undefined;
  if (options.iso !== undefined) await assertReadableFile(options.iso, 'ISO image');
  if (options.kernel !== undefined) {
    await assertReadableFile(options.kernel.image, 'kernel');
    await assertReadableFile(options.kernel.initrd, 'initramfs');
  }
  if (options.secretImage !== undefined) await assertReadableFile(options.secretImage, 'secret image');
  for (const drive of options.drives ?? []) await assertReadableFile(drive.file, 'disk image');
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
      '-no-reboot',
      '-accel',
      options.accel ?? 'tcg',
      '-m',
      String(options.memoryMiB ?? 1024),
    ];
    // QEMU's default TCG CPU lacks RDRAND, which every real x86-64 node has and the kernel seeds its
    // random generator from; without it the first getrandom() (node's start) waits a second or more.
    if ((options.accel ?? 'tcg') === 'tcg') args.push('-cpu', 'qemu64,+rdrand');
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
      args.push('-kernel', options.kernel.image, '-initrd', options.kernel.initrd, '-append', options.kernel.append);
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
    if (options.network) {
      const relayPath = join(tempDir, 'relay.mjs');
      await writeFile(relayPath, RELAY_SCRIPT);
      args.push(...networkArgs(options.network.forwards, relayPath, options.network.mac));
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
      if (options.until?.test(serial)) stop('matched');
    };
    child.stdout.on('data', (chunk: Buffer) => take(decoder.decode(chunk, { stream: true })));
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < STDERR_LIMIT) stderr += chunk.toString('utf8');
    });
    child.stdin.on('error', () => {}); // QEMU may exit before it reads anything
    log?.on('error', (error) => {
      failure ??= error;
      stop('aborted');
    });
    child.on('error', (error) => {
      failure ??= new ToolFailedError(`qemu-system-x86_64 could not start: ${error.message}`, { cause: error });
      if (child.pid === undefined) {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        log?.end();
        reject(failure);
      }
    });

    child.on('close', (exitCode) => {
      clearTimeout(timer);
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
