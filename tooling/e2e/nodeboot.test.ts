import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeStateImage } from '@psyops/nodeboot';
import { serveSite, type SiteServer } from '@psyops/siteapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildDefaultImage,
  createNodeWorkspace,
  E2E_NODE,
  expectSuccess,
  psyops,
  scratchDir,
  serialLines,
  statusFromSerial,
  type NodeWorkspace,
} from './harness.ts';
import { ssh, startNode, type StartNodeOptions } from './psynet-nodes.ts';

// Issue 7, end to end: the default image boots in QEMU with test-node-1's secret volume on USB and
// a state disk, reaches only the site (10.0.2.100:80 → 127.0.0.1), and individuates itself.
const scratch = scratchDir('nodeboot');
const CONFIG_VERSION = 7;
const MOTD = 'configured by the psyops e2e site\n';
const BOOT_TIMEOUT_MS = 360_000;

let iso: string;
let node: NodeWorkspace;
let server: SiteServer;
let stateImage: string;
/** The operator's SSH key (authorized for root on the node by the config's files) and the node's known_hosts line. */
const operatorKey = join(scratch, 'operator_ed25519');
const knownHosts = join(scratch, 'known_hosts');

beforeAll(async () => {
  ({ iso } = await buildDefaultImage(scratch));
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'psyops-e2e-operator', '-f', operatorKey]);
  node = await createNodeWorkspace(scratch, {
    version: CONFIG_VERSION,
    hostname: E2E_NODE.name,
    files: [
      { path: '/etc/motd', content: MOTD },
      { path: '/root/.ssh/authorized_keys', mode: '0600', content: readFileSync(`${operatorKey}.pub`, 'utf8') },
    ],
  });
  server = await serveSite({ root: node.siteDir });
  stateImage = join(scratch, 'state.img');
  await writeStateImage(stateImage);
  const hosts = await psyops(['node', 'known-hosts', E2E_NODE.name], { cwd: node.workspace, timeoutMs: 60_000 });
  expectSuccess(hosts, 'psyops node known-hosts');
  writeFileSync(knownHosts, hosts.stdout);
});
afterAll(() => server?.close());

/** The real OpenSSH client as root, trusting only the node's known_hosts line; with the operator key, or with none (`withKey: false`) to see what else the node offers. */
const sshNode = (port: number, command: string, { withKey = true } = {}) =>
  ssh({ port, command, hostKeyAlias: E2E_NODE.name, knownHosts, ...(withKey ? { identity: operatorKey } : {}) });

/**
 * Boots until postboot finishes; with `whileUp`, keeps the node running for it (given the host
 * port that reaches the guest's sshd), then powers it off.
 */
async function boot<T = undefined>(
  name: string,
  options: Pick<StartNodeOptions, 'secretImage' | 'drives'>,
  whileUp?: (sshPort: number) => Promise<T>,
): Promise<{ lines: string[]; status: ReturnType<typeof statusFromSerial>; context: string; value: T | undefined }> {
  const serialLog = join(scratch, `serial-${name}.log`);
  const running = await startNode({
    iso,
    plan: { name: E2E_NODE.name, mac: E2E_NODE.mac },
    ...options,
    sitePort: server.port,
    serialLog,
    timeoutMs: BOOT_TIMEOUT_MS,
  });
  try {
    const { serial, atMs } = await running.configured;
    console.log(`boot "${name}": postboot finished after ${Math.round(atMs)} ms`);
    const context = `boot "${name}": serial log ${serialLog}, its end:\n${serial.slice(-5000)}`;
    expect(serial, context).not.toContain('psyops-init: FATAL');
    const value = whileUp ? await whileUp(running.ports.ssh) : undefined;
    return { lines: serialLines(serial), status: statusFromSerial(serial), context, value };
  } finally {
    await running.stop();
  }
}

describe('a node individuates itself from its secret volume and the signed site (QEMU, BIOS)', () => {
  it('first boot: hostname, secret mounted read-only, config verified and applied, kept on the state disk; sshd and nebula run; root logs in with the operator key', async () => {
    const { lines, status, context, value } = await boot('first', { secretImage: node.secretImage, drives: [{ file: stateImage }] }, async (port) => ({
      true: await sshNode(port, 'true'),
      hostname: await sshNode(port, 'hostname'),
      password: await sshNode(port, 'true', { withKey: false }),
    }));
    // The host key checked is the one the workspace recorded at node create (StrictHostKeyChecking=yes).
    expect(value!.true, context).toMatchObject({ exitCode: 0 });
    expect(value!.hostname, context).toMatchObject({ exitCode: 0, stdout: E2E_NODE.name });
    // No password (nor keyboard-interactive) login is offered.
    expect(value!.password.exitCode, context).toBe(255);
    expect(String(value!.password.stderr), context).toMatch(/Permission denied \(publickey\)/);
    expect(lines, context).toContain(`psyopsOS: postboot finished status=ok hostname=${E2E_NODE.name} config=${CONFIG_VERSION} secret=mounted-ro`);
    expect(status, context).toMatchObject({
      status: 'ok',
      hostname: E2E_NODE.name,
      secret: 'mounted-ro',
      siteUrl: `http://${E2E_NODE.siteAddress}`,
      config: { version: CONFIG_VERSION, source: 'site', signature: 'verified' },
      lastGood: 'state-volume',
      k3s: 'not-configured',
      problems: [],
    });
    const step = (name: string) => status.steps.find((s) => s.name === name);
    expect(step('secret')?.reason, context).toMatch(/^\/dev\/sd[a-z] mounted read-only at \/mnt\/psyops-secret\/mount$/);
    expect(step('state')?.reason, context).toMatch(/^\/dev\/vd[a-z] mounted read-write at \/var\/lib\/psyopsOS$/);
    expect(step('network')?.reason, context).toMatch(/interfaces renamed \(psy0\).*networking up; sshd started$/);
    expect(step('psynet'), context).toMatchObject({ result: 'ok' });
    expect(step('psynet')?.reason, context).toMatch(/^nebula started; /);
    expect(step('config'), context).toMatchObject({ result: 'ok', reason: `version ${CONFIG_VERSION} applied (signature verified)` });
    expect(step('k3s'), context).toMatchObject({ result: 'skipped', reason: 'k3s is not configured' });
  });

  it('second boot, tampered config on the site: refused, the last good one from the state disk applied', async () => {
    const published = join(node.siteDir, 'nodes', `${E2E_NODE.name}.json`);
    const original = readFileSync(published, 'utf8');
    writeFileSync(published, original.replace('psyops e2e site', 'attacker site'));
    expect(readFileSync(published, 'utf8')).not.toBe(original);
    try {
      const { lines, status, context } = await boot('tampered', { secretImage: node.secretImage, drives: [{ file: stateImage }] });
      expect(lines, context).toContain(`psyopsOS: postboot finished status=degraded hostname=${E2E_NODE.name} config=${CONFIG_VERSION} secret=mounted-ro`);
      // A new RAM root: version 7 can only have come from the state disk.
      expect(status, context).toMatchObject({
        status: 'degraded',
        lastGood: 'state-volume',
        config: { version: CONFIG_VERSION, source: 'last-good', signature: 'refused' },
      });
      expect(status.config.reason, context).toMatch(/signature check failed/);
      expect(status.steps.find((s) => s.name === 'config')?.reason, context).toMatch(
        /^version 7 applied \(last good from the state volume: .*signature check failed/,
      );
    } finally {
      writeFileSync(published, original);
    }
  });

  it('without a secret volume: DHCP fallback, status failed, secret missing', async () => {
    const { lines, status, context } = await boot('no-secret', {});
    expect(lines, context).toContain('psyopsOS: postboot finished status=failed hostname=psyopsOS-unconfigured config=none secret=missing');
    expect(status, context).toMatchObject({ status: 'failed', secret: 'missing', lastGood: 'memory', config: { version: null, signature: 'not-fetched' } });
    expect(
      status.steps.map((s) => `${s.name}:${s.result}`),
      context,
    ).toEqual(['secret:failed', 'state:failed', 'network:ok', 'psynet:skipped', 'config:skipped', 'k3s:skipped']);
    expect(status.steps[0]!.reason, context).toMatch(/^no volume labelled psyops-secret/);
    expect(status.steps[2]!.reason, context).toMatch(/^DHCP fallback on eth0; networking up; sshd started$/);
  });
});
