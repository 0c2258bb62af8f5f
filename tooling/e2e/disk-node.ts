/**
 * Shared by the update end-to-end test and its benchmark: a workspace whose node boots from the A/B
 * disk image (build-disk, the node's secret volume in the disk), the site served to the guest,
 * releases staged and published, and the QEMU boot of that disk with its reboots.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootInQemu, QemuAbortedError, type QemuBootResult } from '@psyops/imagebuild';
import type { NodeStatus } from '@psyops/nodeboot';
import { serveSite, type SiteServer } from '@psyops/siteapi';
import { createNodeWorkspace, DEFAULT_IMAGE_EPOCH, E2E_NODE, expectSuccess, freePort, psyops, type NodeWorkspace } from './harness.ts';
import { ssh, SITE_ADDRESS, TELEPATHY_PORT } from './psynet-nodes.ts';

export const NODE = E2E_NODE.name;
/** Guest memory: the update artifact is downloaded and verified in RAM before the slot is written. */
const MEMORY_MIB = 2048;
// Only whole lines: the serial output arrives in pieces.
const FINISHED_LINE = /psyopsOS: postboot finished[^\r\n]*(?=\r?\n)/g;
const STATUS_LINE = /psyopsOS: status (\{[^\r\n]*\})/g;

export interface DiskNode {
  ports: { ssh: number; telepathy: number };
  /** The serial output so far. */
  serial(): string;
  /** Waits for `pattern` (a /g regex) in the serial output after character `from`; `at` is where its match ends. */
  waitFor(pattern: RegExp, from: number, timeoutMs?: number): Promise<{ match: RegExpExecArray; at: number }>;
  /** Waits for the next `postboot finished` line after character `from` of the serial output. */
  nextBoot(from: number, timeoutMs?: number): Promise<{ line: string; status: NodeStatus; at: number }>;
  stop(): Promise<QemuBootResult>;
}

export interface UpdateWorld {
  node: NodeWorkspace;
  scratch: string;
  /** The folder `site build --images` publishes from. */
  imagesDir: string;
  operatorKey: string;
  knownHosts: string;
  /** build-disk of the embedded default image at `release` (outside the workspace); returns its out dir. */
  buildDisk(release: string, extra?: string[]): Promise<string>;
  /** The disk image `buildDisk` wrote for the node (with its secret volume). */
  nodeDisk(out: string): string;
  /** Puts `release`'s update tar from its out dir into the images folder. */
  stageUpdate(out: string, release: string): void;
  /** `psyops site build` with the images folder, served again on the same port (the guest's forward). */
  publish(): Promise<void>;
  /** Boots `disk` under UEFI (guest reboots stay in this QEMU) with the site forward, SSH and telepathy published. */
  boot(disk: string, name: string, drives?: { file: string; readOnly?: boolean }[]): Promise<DiskNode>;
  /** The real OpenSSH client as root on the node's forwarded port with the operator key. */
  ssh(port: number, command: string, timeoutMs?: number): ReturnType<typeof ssh>;
  /** `psyops fleet … --json` from the workspace, reaching the node at its forwarded SSH port (telepathy through SSH). */
  fleet(port: number, args: string[]): ReturnType<typeof psyops>;
  close(): Promise<void>;
}

/** A node workspace whose config (`version`, `files`) lets the operator key in as root, and its site served. */
export async function createUpdateWorld(scratch: string, config: { version: number; files: { path: string; content: string }[] }): Promise<UpdateWorld> {
  const imagesDir = join(scratch, 'images');
  const operatorKey = join(scratch, 'operator_ed25519');
  const knownHosts = join(scratch, 'known_hosts');
  mkdirSync(imagesDir, { recursive: true });
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'psyops-e2e-operator', '-f', operatorKey]);
  const node = await createNodeWorkspace(scratch, {
    version: config.version,
    hostname: NODE,
    files: [...config.files, { path: '/root/.ssh/authorized_keys', mode: '0600', content: readFileSync(`${operatorKey}.pub`, 'utf8') }],
  });
  const hosts = await psyops(['node', 'known-hosts', NODE], { cwd: node.workspace, timeoutMs: 60_000 });
  expectSuccess(hosts, 'psyops node known-hosts');
  writeFileSync(knownHosts, hosts.stdout);
  const sitePort = await freePort();
  let server: SiteServer | undefined;

  const world: UpdateWorld = {
    node,
    scratch,
    imagesDir,
    operatorKey,
    knownHosts,
    async buildDisk(release, extra = []) {
      const out = join(scratch, `out-${release}`);
      const run = await psyops(['build-disk', '--release', release, '--out', out, ...extra], { cwd: scratch, env: { SOURCE_DATE_EPOCH: DEFAULT_IMAGE_EPOCH } });
      expectSuccess(run, `build-disk ${release}`);
      return out;
    },
    nodeDisk(out) {
      return join(out, readdirSync(out).find((name) => name.endsWith(`-${NODE}.img`))!);
    },
    stageUpdate(out, release) {
      const name = `psyopsOS-${release}-x86_64.tar`;
      copyFileSync(join(out, name), join(imagesDir, name));
    },
    async publish() {
      const run = await psyops(['site', 'build', '--out', node.siteDir, '--images', imagesDir], { cwd: node.workspace, timeoutMs: 300_000 });
      expectSuccess(run, 'site build');
      await server?.close();
      // The server resolves its root once: a rebuilt site is a new folder in the same place.
      server = await serveSite({ root: node.siteDir, port: sitePort });
    },
    boot: (disk, name, drives = []) => bootDisk({ disk, name, drives, sitePort, serialLog: join(scratch, `serial-${name}.log`) }),
    ssh: (port, command, timeoutMs = 600_000) => ssh({ port, command, hostKeyAlias: NODE, knownHosts, identity: operatorKey, timeoutMs }),
    fleet(port, args) {
      const inventory = join(scratch, 'inventory.json');
      writeFileSync(inventory, JSON.stringify({ nodes: { [NODE]: { host: '127.0.0.1', sshPort: port, telepathyVia: 'ssh' } } }));
      const reach = [
        '--inventory',
        inventory,
        '--identity',
        operatorKey,
        '--ssh-option',
        `UserKnownHostsFile=${knownHosts}`,
        '--ssh-option',
        `HostKeyAlias=${NODE}`,
      ];
      return psyops(['fleet', ...args, ...reach, '--json'], { cwd: node.workspace, timeoutMs: 1_200_000 });
    },
    async close() {
      await server?.close();
    },
  };
  return world;
}

async function bootDisk(options: {
  disk: string;
  name: string;
  drives: { file: string; readOnly?: boolean }[];
  sitePort: number;
  serialLog: string;
}): Promise<DiskNode> {
  const { name, serialLog } = options;
  const ports = { ssh: await freePort(), telepathy: await freePort() };
  const controller = new AbortController();
  let serial = '';
  const ended = bootInQemu({
    disk: options.disk,
    uefi: true,
    allowReboot: true,
    memoryMiB: MEMORY_MIB,
    drives: options.drives,
    network: {
      mac: E2E_NODE.mac,
      forwards: [{ guestAddress: SITE_ADDRESS, guestPort: 80, hostPort: options.sitePort }],
      publish: [
        { hostPort: ports.ssh, guestPort: 22 },
        { hostPort: ports.telepathy, guestPort: TELEPATHY_PORT },
      ],
    },
    timeoutMs: 1_500_000,
    serialLog,
    signal: controller.signal,
    onSerial(text) {
      serial += text;
    },
  }).catch((error: unknown) => {
    if (error instanceof QemuAbortedError) return { reason: 'matched' as const, exitCode: null, serial, durationMs: 0 };
    throw error;
  });
  let endedWith: QemuBootResult | undefined;
  ended.then((result) => (endedWith = result)).catch(() => undefined);
  const node: DiskNode = {
    ports,
    serial: () => serial,
    async waitFor(pattern, from, timeoutMs = 600_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        pattern.lastIndex = from;
        const match = pattern.exec(serial);
        if (match) return { match, at: match.index + match[0].length };
        if (endedWith)
          throw new Error(`${name}: QEMU ended (${endedWith.reason}) before ${pattern}; serial log ${serialLog}, its end:\n${serial.slice(-4000)}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      throw new Error(`${name}: no ${pattern} within ${timeoutMs} ms after offset ${from}; serial log ${serialLog}, its end:\n${serial.slice(-4000)}`);
    },
    async nextBoot(from, timeoutMs = 600_000) {
      const { match, at } = await node.waitFor(FINISHED_LINE, from, timeoutMs);
      STATUS_LINE.lastIndex = from;
      const status = STATUS_LINE.exec(serial);
      if (!status) throw new Error(`${name}: no status line before "${match[0]}"`);
      return { line: match[0], status: JSON.parse(status[1]!) as NodeStatus, at };
    },
    stop() {
      controller.abort();
      return ended;
    },
  };
  return node;
}
