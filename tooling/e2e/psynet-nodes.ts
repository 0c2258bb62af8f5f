/**
 * Two psyopsOS nodes from one workspace, booted side by side (shared by the psynet e2e test and
 * the two-node benchmark): node-a is a psynet lighthouse with a fixed underlay address on an L2
 * link both guests share, node-b a plain node on the same link. Each guest's user network is
 * restricted: it reaches only the site (10.0.2.100:80 → 127.0.0.1) and publishes its sshd and
 * telepathy's port on ports of the host's 127.0.0.1 (telepathy listens on psynet and 127.0.0.1
 * only, so the forward of its port shows that the underlay card gets nothing). A node with a
 * secret volume gets a psyops-state volume too, unless told otherwise.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootInQemu, QemuAbortedError, type QemuBootResult, type QemuDrive } from '@psyops/imagebuild';
import { writeStateImage } from '@psyops/nodeboot';
import { execa } from 'execa';
import { E2E_NODE, expectSuccess, freePort, POSTBOOT_FINISHED, psyops } from './harness.ts';

/** Where every guest reaches the site (relayed to the site server on the host's 127.0.0.1). */
export const SITE_ADDRESS = E2E_NODE.siteAddress;
export const TELEPATHY_PORT = 7453;
const UNDERLAY_PORT = 4242;

export interface NodePlan {
  name: string;
  mac: string;
  /** The node's address on the shared link (eth1), when it has one. */
  underlay?: string;
  /** Makes it a psynet lighthouse reached at `underlay:4242`. */
  lighthouse?: boolean;
  /** The node definition's config section (version, hostname and the operator key are added). */
  config?: Record<string, unknown>;
}

export const NODE_A: NodePlan = { name: 'node-a', mac: '52:54:00:77:00:0a', underlay: '192.168.77.1', lighthouse: true };
export const NODE_B: NodePlan = {
  name: 'node-b',
  mac: '52:54:00:77:00:0b',
  underlay: '192.168.77.2',
  // Nebula drops inbound traffic but ICMP and telepathy's port unless a rule lets it in: SSH from the lighthouses.
  config: { firewall: [{ port: 22, proto: 'tcp', groups: ['lighthouses'] }] },
};

export interface PsynetWorkspace {
  workspace: string;
  siteDir: string;
  /** Node name → its psyops-secret image. */
  secretImages: Record<string, string>;
  /** Node name → its psynet address, as node create recorded it. */
  psynetAddresses: Record<string, string>;
  /** The operator's key (authorized for root on every node) and a known_hosts file for every node, from `psyops node known-hosts`. */
  operatorKey: string;
  knownHosts: string;
}

/** DHCP on psy0 (the user network), and a static address on the link card (eth1) when the node has one. */
function interfacesFile(plan: NodePlan): string {
  const link = plan.underlay ? `\nauto eth1\niface eth1 inet static\n\taddress ${plan.underlay}\n\tnetmask 255.255.255.0\n` : '';
  return `auto lo\niface lo inet loopback\n\nauto psy0\niface psy0 inet dhcp\n${link}`;
}

/**
 * A workspace with a psynet CA and the given nodes (`node create` with their MACs, interfaces and
 * the site URL), the operator key in each node's authorized_keys and every node's known_hosts
 * line in /root/.ssh/known_hosts (so one node logs into another with strict host key checking),
 * config version 1, and the built site. Every step is the real CLI.
 */
export async function createPsynetWorkspace(dir: string, nodes: readonly NodePlan[]): Promise<PsynetWorkspace> {
  const workspace = join(dir, 'ws');
  const cli = async (args: string[]) => {
    const run = await psyops(args, { cwd: workspace, timeoutMs: 120_000 });
    expectSuccess(run, `psyops ${args.join(' ')}`);
    return run.stdout;
  };
  expectSuccess(await psyops(['init', '--no-password', workspace], { cwd: dir, timeoutMs: 120_000 }), 'psyops init');
  await cli(['psynet', 'ca', 'init', '--name', 'psyops e2e psynet']);
  const operatorKey = join(dir, 'operator_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'psyops-e2e-operator', '-f', operatorKey]);
  const secretImages: Record<string, string> = {};
  for (const plan of nodes) {
    const interfaces = join(dir, `${plan.name}.interfaces`);
    writeFileSync(interfaces, interfacesFile(plan));
    secretImages[plan.name] = join(dir, `${plan.name}.secret.img`);
    const lighthouse = plan.lighthouse ? ['--lighthouse', `${plan.underlay}:${UNDERLAY_PORT}`] : [];
    await cli([
      'node',
      'create',
      plan.name,
      '--mac',
      plan.mac,
      '--interfaces',
      interfaces,
      '--site-url',
      `http://${SITE_ADDRESS}`,
      ...lighthouse,
      '--out',
      secretImages[plan.name]!,
    ]);
  }
  const knownHostsLines = await cli(['node', 'known-hosts']);
  const knownHosts = join(dir, 'known_hosts');
  writeFileSync(knownHosts, knownHostsLines);
  const psynetAddresses: Record<string, string> = {};
  for (const plan of nodes) {
    const definitionPath = join(workspace, 'nodes', `${plan.name}.json`);
    const definition = JSON.parse(readFileSync(definitionPath, 'utf8'));
    psynetAddresses[plan.name] = definition.psynetAddress;
    const config = {
      version: 1,
      hostname: plan.name,
      ...plan.config,
      files: [
        { path: '/root/.ssh/authorized_keys', mode: '0600', content: readFileSync(`${operatorKey}.pub`, 'utf8') },
        { path: '/root/.ssh/known_hosts', mode: '0644', content: knownHostsLines },
        ...(((plan.config?.files as unknown[]) ?? []) as object[]),
      ],
    };
    writeFileSync(definitionPath, `${JSON.stringify({ ...definition, config }, null, 2)}\n`);
  }
  const siteDir = join(dir, 'site');
  await cli(['site', 'build', '--out', siteDir]);
  return { workspace, siteDir, secretImages, psynetAddresses, operatorKey, knownHosts };
}

/** A link name of this run only: two runs on one host never share a segment. */
export const uniqueLinkName = () => `psynet-${randomBytes(4).toString('hex')}`;

export interface RunningNode {
  name: string;
  /** Host ports on 127.0.0.1 forwarded to the guest's port 22 (sshd) and 7453 (telepathy's, on the user-network card). */
  ports: { ssh: number; telepathy: number };
  /** Resolves when postboot finished (its serial text so far, ms since QEMU start); rejects when QEMU ends first. */
  configured: Promise<{ serial: string; atMs: number }>;
  /** Powers the guest off (kills QEMU) and resolves with the boot's result. */
  stop(): Promise<QemuBootResult>;
}

export interface StartNodeOptions {
  iso: string;
  plan: NodePlan;
  /** Its psyops-secret image on USB; none: the node boots unconfigured. */
  secretImage?: string;
  /**
   * Further disks. Default, for a node with a secret volume: a fresh empty psyops-state volume
   * beside its serial log (without one a boot is degraded: no downgrade protection); [] for none.
   */
  drives?: QemuDrive[];
  sitePort: number;
  /** The L2 link the node's second card is on. */
  link?: string;
  serialLog: string;
  timeoutMs: number;
}

/** Boots a node in the background; see RunningNode. */
export async function startNode(options: StartNodeOptions): Promise<RunningNode> {
  const { plan } = options;
  const ports = { ssh: await freePort(), telepathy: await freePort() };
  let drives = options.drives;
  if (drives === undefined && options.secretImage) {
    const stateImage = `${options.serialLog.replace(/\.log$/, '')}.state.img`;
    // Fresh for every boot: a state volume another boot left would carry its last good config.
    await writeStateImage(stateImage, { force: true });
    drives = [{ file: stateImage }];
  }
  const controller = new AbortController();
  const started = performance.now();
  let serial = '';
  let finished = false;
  let settle!: { resolve: (value: { serial: string; atMs: number }) => void; reject: (error: Error) => void };
  const configured = new Promise<{ serial: string; atMs: number }>((resolve, reject) => {
    settle = { resolve, reject };
  });
  // Awaited by the caller; until then a failure is not unhandled.
  configured.catch(() => undefined);
  const ended = bootInQemu({
    iso: options.iso,
    ...(options.secretImage ? { secretImage: options.secretImage } : {}),
    ...(drives ? { drives } : {}),
    network: {
      mac: plan.mac,
      forwards: [{ guestAddress: SITE_ADDRESS, guestPort: 80, hostPort: options.sitePort }],
      publish: [
        { hostPort: ports.ssh, guestPort: 22 },
        { hostPort: ports.telepathy, guestPort: TELEPATHY_PORT },
      ],
    },
    ...(options.link ? { links: [{ name: options.link }] } : {}),
    timeoutMs: options.timeoutMs,
    serialLog: options.serialLog,
    signal: controller.signal,
    onSerial(text) {
      serial += text;
      if (!finished && POSTBOOT_FINISHED.test(serial)) {
        finished = true;
        settle.resolve({ serial, atMs: performance.now() - started });
      }
    },
  }).then(
    (result) => {
      if (!finished)
        settle.reject(
          new Error(`${plan.name}: QEMU ended (${result.reason}) before postboot finished; serial log ${options.serialLog}, its end:\n${serial.slice(-4000)}`),
        );
      return result;
    },
    (error: unknown) => {
      if (error instanceof QemuAbortedError) return { reason: 'matched' as const, exitCode: null, serial, durationMs: Math.round(performance.now() - started) };
      if (!finished) settle.reject(error as Error);
      throw error;
    },
  );
  ended.catch(() => undefined);
  return {
    name: plan.name,
    ports,
    configured,
    stop() {
      controller.abort();
      return ended;
    },
  };
}

export interface SshResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Options of the real OpenSSH client for a node: no user config, strict host key checking against
 * `knownHosts` only (as `hostKeyAlias` when given), and `identity` (the operator key) as the only key.
 */
export function sshClientOptions(options: { knownHosts: string; hostKeyAlias?: string; identity?: string; forwardAgent?: boolean }): string[] {
  const settings = ['BatchMode=yes', 'StrictHostKeyChecking=yes', `UserKnownHostsFile=${options.knownHosts}`, 'ConnectTimeout=90'];
  if (options.hostKeyAlias) settings.push(`HostKeyAlias=${options.hostKeyAlias}`);
  if (options.identity) settings.push('IdentitiesOnly=yes');
  if (options.forwardAgent) settings.push('ForwardAgent=yes');
  return ['-F', '/dev/null', ...(options.identity ? ['-i', options.identity] : []), ...settings.flatMap((setting) => ['-o', setting])];
}

/**
 * The real OpenSSH client as root on 127.0.0.1:`port`, trusting only `knownHosts` for `hostKeyAlias`;
 * with `identity` (the operator key) or none (`PubkeyAuthentication=no`), and the agent at `agentSocket` forwarded.
 */
export async function ssh(options: {
  port: number;
  hostKeyAlias: string;
  knownHosts: string;
  command: string;
  identity?: string;
  agentSocket?: string;
  timeoutMs?: number;
}): Promise<SshResult> {
  const client = sshClientOptions({ ...options, forwardAgent: options.agentSocket !== undefined });
  const noKey = options.identity || options.agentSocket ? [] : ['-o', 'PubkeyAuthentication=no'];
  const result = await execa('ssh', [...client, ...noKey, '-p', String(options.port), 'root@127.0.0.1', options.command], {
    reject: false,
    timeout: options.timeoutMs ?? 180_000,
    input: '',
    env: { SSH_AUTH_SOCK: options.agentSocket },
  });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

/** An ssh-agent of this test only, holding `key`, at a socket in `dir`; `stop` ends it (by its PID). */
export async function startAgent(dir: string, key: string): Promise<{ socket: string; stop(): void }> {
  const socket = join(dir, 'agent.sock');
  // -D: in the foreground, so the child is the agent and its PID is ours to end.
  const agent = execa('ssh-agent', ['-D', '-a', socket], { reject: false, timeout: 1_800_000, stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const added = await execa('ssh-add', ['-q', key], { reject: false, env: { SSH_AUTH_SOCK: socket }, timeout: 10_000 });
    if (added.exitCode === 0) return { socket, stop: () => agent.kill() };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  agent.kill();
  throw new Error(`ssh-agent at ${socket} did not take ${key} within 10 s`);
}
