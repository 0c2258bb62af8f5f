import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import type { ClientRequest } from 'node:http';
import { dirname, join, normalize } from 'node:path';
import { FetchLimitError } from './errors.js';

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface FetchResult {
  status: number;
  body: Buffer;
}

/** What one fetch may cost: a hostile network must not hang the node nor fill its RAM. */
export interface FetchLimits {
  /** Wall-clock deadline of the whole fetch: connecting, redirects, headers and the complete body. */
  deadlineMs: number;
  /** The most body bytes accepted: a larger Content-Length is refused at once, a longer body aborted at the limit. */
  maxBytes: number;
  /** Redirects followed at most (default 3), each within the first URL's origin, never from https to http. */
  maxRedirects?: number;
}

const DEFAULT_MAX_REDIRECTS = 3;

export interface NetworkInterface {
  name: string;
  mac: string;
}

/**
 * Everything postboot does to the machine, in one place: the node runs it for real
 * (LinuxSystem), host tests run the very same steps against a temporary root (TempRootSystem).
 * Paths are as the node sees them (`/etc/hostname`).
 */
export interface NodeSystem {
  /** Where a node path (`/etc/hostname`) is on this machine. */
  pathOnHost(path: string): string;
  /** The block device (or image) whose file system has this label; undefined when there is none yet. */
  findDeviceByLabel(label: string): Promise<string | undefined>;
  /** Mounts an ext4 device read-only. */
  mountReadOnly(device: string, mountpoint: string): Promise<void>;
  /** Mounts an ext4 device read-write (the state volume), its root directory root-only (0700). */
  mountReadWrite(device: string, mountpoint: string): Promise<void>;
  setHostname(name: string): Promise<void>;
  listInterfaces(): Promise<NetworkInterface[]>;
  /** Renames interfaces as /etc/mactab says (each must be down). */
  renameInterfaces(): Promise<void>;
  /** Brings up every `auto` interface of /etc/network/interfaces. */
  bringUpNetworking(): Promise<void>;
  /** Whether the init script of a service is installed. */
  hasService(name: string): Promise<boolean>;
  startService(name: string): Promise<void>;
  restartService(name: string): Promise<void>;
  /** Whether a command is installed in one of the standard bin directories. */
  hasCommand(name: string): Promise<boolean>;
  run(command: string, args: readonly string[], timeoutMs: number): Promise<CommandResult>;
  readFile(path: string): Promise<Buffer | undefined>;
  /** Replaces a file atomically and durably (file and directory synced), created with its final mode. */
  writeFile(path: string, data: string | Uint8Array, mode: number): Promise<void>;
  mkdir(path: string, mode: number): Promise<void>;
  exists(path: string): Promise<boolean>;
  /** One line on the console(s). */
  console(line: string): void;
  /** GET `url` within `limits`; rejects with FetchLimitError when a limit is hit. */
  fetch(url: string, limits: FetchLimits): Promise<FetchResult>;
  /** Milliseconds since the epoch. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

const BIN_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function runCommand(command: string, args: readonly string[], timeoutMs: number): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 127) : 0;
      resolve({ exitCode: code, stdout: String(stdout), stderr: String(stderr || (error && !stderr ? error.message : '')) });
    });
  });
}

/** File operations relative to a root directory, shared by both systems. */
export abstract class RootedSystem implements NodeSystem {
  constructor(readonly root: string) {}

  /** Where a node path is on this machine; never outside the root. */
  pathOnHost(path: string): string {
    const clean = normalize(`/${path}`);
    return this.root === '/' ? clean : join(this.root, clean);
  }

  abstract findDeviceByLabel(label: string): Promise<string | undefined>;
  abstract mountReadOnly(device: string, mountpoint: string): Promise<void>;
  abstract mountReadWrite(device: string, mountpoint: string): Promise<void>;
  abstract setHostname(name: string): Promise<void>;
  abstract listInterfaces(): Promise<NetworkInterface[]>;
  abstract renameInterfaces(): Promise<void>;
  abstract bringUpNetworking(): Promise<void>;
  abstract startService(name: string): Promise<void>;
  abstract restartService(name: string): Promise<void>;
  abstract run(command: string, args: readonly string[], timeoutMs: number): Promise<CommandResult>;
  abstract console(line: string): void;

  async hasService(name: string): Promise<boolean> {
    return this.exists(`/etc/init.d/${name}`);
  }

  async hasCommand(name: string): Promise<boolean> {
    for (const dir of BIN_DIRS) if (await this.exists(`${dir}/${name}`)) return true;
    return false;
  }

  // File operations are synchronous on purpose: postboot does one thing at a time, and under
  // emulation each trip through libuv's thread pool costs milliseconds (~20 ms per durable write).

  async readFile(path: string): Promise<Buffer | undefined> {
    try {
      return readFileSync(this.pathOnHost(path));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async writeFile(path: string, data: string | Uint8Array, mode: number): Promise<void> {
    const target = this.pathOnHost(path);
    mkdirSync(dirname(target), { recursive: true });
    const temp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
    const fd = openSync(temp, 'wx', mode);
    try {
      writeFileSync(fd, data);
      fchmodSync(fd, mode);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      renameSync(temp, target);
    } catch (error) {
      try {
        unlinkSync(temp);
      } catch {
        // already gone
      }
      throw error;
    }
    // The rename reaches a disk (the state volume) only with its directory: a node may lose power right after boot.
    const directory = openSync(dirname(target), 'r');
    try {
      fsyncSync(directory);
    } finally {
      closeSync(directory);
    }
  }

  /** Creates a directory with `mode`; an existing one keeps its mode (packages may have set it). */
  async mkdir(path: string, mode: number): Promise<void> {
    if (existsSync(this.pathOnHost(path))) return;
    mkdirSync(this.pathOnHost(path), { recursive: true, mode });
    chmodSync(this.pathOnHost(path), mode);
  }

  async exists(path: string): Promise<boolean> {
    return existsSync(this.pathOnHost(path));
  }

  /**
   * node:http rather than fetch(): fetch loads undici, seconds of start-up under emulation. Each
   * module is loaded on first use, node:https (TLS) only for an https site (redirects keep the origin,
   * hence the scheme).
   */
  async fetch(url: string, limits: FetchLimits): Promise<FetchResult> {
    const first = new URL(url);
    const { get } = first.protocol === 'https:' ? await import('node:https') : await import('node:http');
    const maxRedirects = limits.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
    return new Promise((resolve, reject) => {
      let request: ClientRequest | undefined;
      let settled = false;
      const fail = (error: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        request?.destroy();
        reject(error);
      };
      const refuse = (why: string, limit: FetchLimitError['limit']) => fail(new FetchLimitError(`GET ${url}: ${why}`, limit));
      // One timer for everything: a socket idle timeout alone lets a server drip one byte a second forever.
      const deadline = setTimeout(() => refuse(`no complete answer within the deadline of ${limits.deadlineMs} ms`, 'deadline'), limits.deadlineMs);

      const follow = (current: URL, redirectsLeft: number) => {
        request = get(current, (response) => {
          const status = response.statusCode ?? 0;
          const location = response.headers.location;
          if (status >= 300 && status < 400 && location !== undefined) {
            response.resume();
            const next = URL.parse(location, current.href);
            if (next === null) return refuse('redirect to an invalid URL', 'redirect');
            if (current.protocol === 'https:' && next.protocol === 'http:') return refuse('redirect from https to http refused', 'redirect');
            if (next.origin !== first.origin) return refuse(`redirect to ${next.origin} refused (only within ${first.origin})`, 'redirect');
            if (redirectsLeft === 0) return refuse(`more than the limit of ${maxRedirects} redirects`, 'redirect');
            return follow(next, redirectsLeft - 1);
          }
          const declared = Number(response.headers['content-length']);
          if (declared > limits.maxBytes) return refuse(`Content-Length ${declared} exceeds the limit of ${limits.maxBytes} bytes`, 'size');
          const chunks: Buffer[] = [];
          let received = 0;
          response.on('data', (chunk: Buffer) => {
            received += chunk.length;
            if (received > limits.maxBytes) return refuse(`the body exceeds the limit of ${limits.maxBytes} bytes`, 'size');
            chunks.push(chunk);
          });
          response.on('end', () => {
            if (settled) return;
            settled = true;
            clearTimeout(deadline);
            resolve({ status, body: Buffer.concat(chunks) });
          });
          response.on('error', fail);
          // Closed before 'end': the server hung up mid-body.
          response.on('close', () => fail(new Error(`GET ${url}: the connection closed before the end of the body`)));
        });
        request.on('error', fail);
      };
      follow(first, maxRedirects);
    });
  }

  now(): number {
    return Date.now();
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
}

/** The real node: busybox tools on a Linux root. */
export class LinuxSystem extends RootedSystem {
  constructor() {
    super('/');
  }

  private async must(command: string, args: readonly string[], timeoutMs = 30_000): Promise<void> {
    const result = await runCommand(command, args, timeoutMs);
    if (result.exitCode !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.exitCode}: ${result.stderr.trim().split('\n').at(-1) ?? ''}`);
  }

  /**
   * Reads the ext2/3/4 superblock of every block device in /proc/partitions, as findfs does, but
   * without a process per look (~50 ms each under emulation; the secret volume is polled for).
   * The volumes nodeboot looks for are ext4. findfs only when /proc/partitions cannot be read.
   */
  async findDeviceByLabel(label: string): Promise<string | undefined> {
    let partitions: string;
    try {
      partitions = readFileSync('/proc/partitions', 'utf8');
    } catch {
      const result = await runCommand('findfs', [`LABEL=${label}`], 10_000);
      const device = result.stdout.trim();
      return result.exitCode === 0 && device.startsWith('/dev/') ? device : undefined;
    }
    for (const [, blocks, name] of partitions.matchAll(/^\s*\d+\s+\d+\s+(\d+)\s+(\S+)\s*$/gm)) {
      // Empty drives (a CD-ROM without a disc) have no blocks; floppies may take seconds to answer.
      if (blocks === '0' || /^(fd|ram|zram)\d/.test(name!)) continue;
      const device = `/dev/${name}`;
      if (ext4Label(device) === label) return device;
    }
    return undefined;
  }

  private ext4Loaded = false;

  private async mountExt4(device: string, mountpoint: string, mode: 'ro' | 'rw'): Promise<void> {
    // ext4 is a module in the Debian kernel; mount asks for it by name, but only when modprobe can
    // find it. The initramfs usually loaded it already: one process fewer to start under emulation.
    if (!this.ext4Loaded && !/\text4$/m.test(readTextOrEmpty('/proc/filesystems'))) await runCommand('modprobe', ['ext4'], 10_000);
    this.ext4Loaded = true;
    await this.must('mount', ['-t', 'ext4', '-o', `${mode},nodev,nosuid,noexec`, device, mountpoint]);
  }

  async mountReadOnly(device: string, mountpoint: string): Promise<void> {
    await this.mountExt4(device, mountpoint, 'ro');
  }

  async mountReadWrite(device: string, mountpoint: string): Promise<void> {
    await this.mountExt4(device, mountpoint, 'rw');
    chmodSync(mountpoint, 0o700); // mkfs.ext4 makes the root 0755
  }

  /** What `hostname NAME` does (sethostname), without starting a process. */
  async setHostname(name: string): Promise<void> {
    writeFileSync('/proc/sys/kernel/hostname', name);
  }

  async listInterfaces(): Promise<NetworkInterface[]> {
    let names: string[];
    try {
      names = readdirSync('/sys/class/net')
        .filter((name) => name !== 'lo')
        .sort();
    } catch {
      names = [];
    }
    const interfaces = [];
    for (const name of names) {
      const mac = readTextOrEmpty(`/sys/class/net/${name}/address`).trim().toLowerCase();
      if (mac !== '' && mac !== '00:00:00:00:00:00') interfaces.push({ name, mac });
    }
    return interfaces;
  }

  async renameInterfaces(): Promise<void> {
    // nameif renames only interfaces that are down; the init system may have brought one up already.
    const mactab = (await this.readFile('/etc/mactab'))?.toString('utf8') ?? '';
    const wanted = new Map(
      mactab
        .split('\n')
        .map((line) => line.trim().split(/\s+/))
        .filter((f) => f.length === 2)
        .map(([name, mac]) => [mac!.toLowerCase(), name!]),
    );
    const interfaces = await this.listInterfaces();
    for (const { name, mac } of interfaces) {
      if (!wanted.has(mac) || wanted.get(mac) === name) continue;
      // IFF_UP is bit 0 of the flags: no `ip` process for an interface that is down already.
      const flags = Number.parseInt(readTextOrEmpty(`/sys/class/net/${name}/flags`), 16);
      if (Number.isNaN(flags) || flags & 1) await this.must('ip', ['link', 'set', 'dev', name, 'down']);
    }
    // Every card already has its name (postboot run again by hand): nothing for nameif to do.
    if ([...wanted].every(([mac, name]) => interfaces.some((i) => i.mac === mac && i.name === name))) return;
    await this.must('nameif', ['-c', '/etc/mactab']);
  }

  async bringUpNetworking(): Promise<void> {
    mkdirSync('/var/run', { recursive: true }); // busybox ifup keeps its state in /var/run/ifstate
    await this.must('ifup', ['-a'], 60_000);
  }

  async startService(name: string): Promise<void> {
    await this.must(`/etc/init.d/${name}`, ['start'], 120_000);
  }

  async restartService(name: string): Promise<void> {
    await this.must(`/etc/init.d/${name}`, ['restart'], 120_000);
  }

  run(command: string, args: readonly string[], timeoutMs: number): Promise<CommandResult> {
    return runCommand(command, args, timeoutMs);
  }

  private consoleFds: number[] | undefined;

  /**
   * At boot, stdout is /dev/console, which reaches only the last `console=` of the kernel command
   * line: lines then go to every active console (as the boot hook's own lines do). Run by hand,
   * they go to stdout.
   */
  console(line: string): void {
    this.consoleFds ??= openActiveConsoles();
    if (this.consoleFds.length === 0) process.stdout.write(`${line}\n`);
    for (const fd of this.consoleFds) {
      try {
        writeSync(fd, `${line}\n`);
      } catch {
        // a console that went away must not stop the boot
      }
    }
  }
}

/** EXT2/3/4 superblock: at byte 1024; magic 0xEF53 at +0x38, the 16-byte volume name at +0x78. */
const SUPERBLOCK = 1024;

function readTextOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** The label of an ext2/3/4 file system on `device`; undefined for anything else or an unreadable device. */
export function ext4Label(device: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(device, 'r');
    const block = Buffer.alloc(0x88);
    if (readSync(fd, block, 0, block.length, SUPERBLOCK) < block.length || block.readUInt16LE(0x38) !== 0xef53) return undefined;
    const name = block.subarray(0x78, 0x88);
    const end = name.indexOf(0);
    return name.toString('utf8', 0, end < 0 ? name.length : end);
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** /dev/console: character device 5:1. */
const DEV_CONSOLE_RDEV = (5 << 8) | 1;

function openActiveConsoles(): number[] {
  try {
    if (fstatSync(1).rdev !== DEV_CONSOLE_RDEV) return [];
    const names = readFileSync('/sys/class/tty/console/active', 'utf8')
      .trim()
      .split(/\s+/)
      .filter((name) => /^[a-zA-Z0-9]+$/.test(name));
    const fds = [];
    for (const name of names) {
      try {
        fds.push(openSync(`/dev/${name}`, constants.O_WRONLY | constants.O_NOCTTY));
      } catch {
        // not there: skip it
      }
    }
    return fds;
  } catch {
    return [];
  }
}
