import { chmod, mkdir, readdir, readFile, rm, stat, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { runTool, ToolFailedError } from '@psyops/core';
import { RootedSystem, type CommandResult, type NetworkInterface } from './system.js';

export interface TempRootSystemOptions {
  /** The directory standing in for `/`. */
  root: string;
  /**
   * Devices by file system label (what findfs would find): ext4 images, mounted read-only by
   * extracting them; for a volume mounted read-write (psyops-state), a directory standing in for
   * its file system, which outlives the temporary root as the disk outlives a reboot.
   */
  devices?: Record<string, string>;
  /** The machine's network interfaces before renaming. */
  interfaces?: NetworkInterface[];
  /** Waits are recorded, and shortened to this many ms (default 0), so tests do not sleep. */
  sleepMs?: number;
}

/** What TempRootSystem did, for tests to assert. */
export interface RecordedEffect {
  kind: 'mount' | 'hostname' | 'rename' | 'networking' | 'start' | 'restart' | 'run' | 'sleep';
  detail: string;
}

async function debugfsRdump(image: string, dir: string): Promise<void> {
  // debugfs prints its banner on stderr and exits 0 even on some failures: the caller checks the result.
  await runTool('debugfs', ['-R', `rdump / ${dir}`, image], { timeoutMs: 30_000 });
}

async function makeReadOnly(path: string): Promise<void> {
  const info = await stat(path);
  if (info.isDirectory()) for (const name of await readdir(path)) await makeReadOnly(join(path, name));
  await chmod(path, info.mode & 0o555);
}

/**
 * A NodeSystem over a temporary root directory: "mounting" extracts the real ext4 image with
 * debugfs (no root, no loop device) and makes it read-only; hostname, interface renames,
 * networking and services are recorded instead of done; fetch is real (a site on 127.0.0.1).
 */
export class TempRootSystem extends RootedSystem {
  readonly effects: RecordedEffect[] = [];
  readonly consoleLines: string[] = [];
  private interfaces: NetworkInterface[];

  constructor(private readonly options: TempRootSystemOptions) {
    super(options.root);
    this.interfaces = [...(options.interfaces ?? [{ name: 'eth0', mac: '52:54:00:12:34:56' }])];
  }

  /** Started services, in order. */
  get startedServices(): string[] {
    return this.effects.filter((e) => e.kind === 'start').map((e) => e.detail);
  }

  async findDeviceByLabel(label: string): Promise<string | undefined> {
    return this.options.devices?.[label];
  }

  async mountReadOnly(device: string, mountpoint: string): Promise<void> {
    const target = this.pathOnHost(mountpoint);
    await mkdir(target, { recursive: true });
    await debugfsRdump(device, target);
    if ((await readdir(target)).length === 0) throw new ToolFailedError(`${device} is not an ext4 image (debugfs found nothing in it)`);
    await makeReadOnly(target);
    this.effects.push({ kind: 'mount', detail: `${device} ${mountpoint} ro` });
  }

  /** The mountpoint becomes a symlink to the directory standing in for the volume's file system. */
  async mountReadWrite(device: string, mountpoint: string): Promise<void> {
    if (!(await stat(device)).isDirectory()) throw new ToolFailedError(`${device}: a read-write volume must be a directory in a temporary root`);
    const target = this.pathOnHost(mountpoint);
    await rm(target, { recursive: true, force: true });
    await mkdir(dirname(target), { recursive: true });
    await symlink(device, target);
    await chmod(device, 0o700);
    this.effects.push({ kind: 'mount', detail: `${device} ${mountpoint} rw` });
  }

  async setHostname(name: string): Promise<void> {
    this.effects.push({ kind: 'hostname', detail: name });
  }

  async listInterfaces(): Promise<NetworkInterface[]> {
    return [...this.interfaces];
  }

  async renameInterfaces(): Promise<void> {
    const mactab = (await readFile(this.pathOnHost('/etc/mactab'), 'utf8')).split('\n');
    for (const line of mactab) {
      const [name, mac] = line.trim().split(/\s+/);
      if (!name || !mac) continue;
      const found = this.interfaces.find((i) => i.mac === mac.toLowerCase());
      if (!found) throw new Error(`nameif: no interface has MAC ${mac}`);
      this.effects.push({ kind: 'rename', detail: `${found.name} ${name}` });
      found.name = name;
    }
  }

  async bringUpNetworking(): Promise<void> {
    this.effects.push({ kind: 'networking', detail: 'ifup -a' });
  }

  async startService(name: string): Promise<void> {
    this.effects.push({ kind: 'start', detail: name });
  }

  async restartService(name: string): Promise<void> {
    this.effects.push({ kind: 'restart', detail: name });
  }

  async run(command: string, args: readonly string[]): Promise<CommandResult> {
    this.effects.push({ kind: 'run', detail: [command, ...args].join(' ') });
    return { exitCode: 0, stdout: '', stderr: '' };
  }

  console(line: string): void {
    this.consoleLines.push(line);
  }

  override async sleep(ms: number): Promise<void> {
    this.effects.push({ kind: 'sleep', detail: String(ms) });
    await super.sleep(this.options.sleepMs ?? 0);
  }
}
