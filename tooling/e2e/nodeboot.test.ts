import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bootInQemu, type QemuBootOptions } from '@psyops/imagebuild';
import { writeStateImage } from '@psyops/nodeboot';
import { serveSite, type SiteServer } from '@psyops/siteapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDefaultImage, createNodeWorkspace, E2E_NODE, scratchDir, serialLines, statusFromSerial, type NodeWorkspace } from './harness.ts';

// Issue 7, end to end: the default image boots in QEMU with test-node-1's secret volume on USB and
// a state disk, reaches only the site (10.0.2.100:80 → 127.0.0.1), and individuates itself.
const scratch = scratchDir('nodeboot');
const CONFIG_VERSION = 7;
const MOTD = 'configured by the psyops e2e site\n';
const K3S_TOKEN = 'e2e-k3s-token-5c1e9a';
const BOOT_TIMEOUT_MS = 360_000;
const FINISHED = /psyopsOS: postboot finished[^\n]*\n|psyops-init: FATAL[^\n]*\n/;

let iso: string;
let node: NodeWorkspace;
let server: SiteServer;
let stateImage: string;

beforeAll(async () => {
  ({ iso } = await buildDefaultImage(scratch));
  node = await createNodeWorkspace(scratch, {
    version: CONFIG_VERSION,
    hostname: E2E_NODE.name,
    files: [{ path: '/etc/motd', content: MOTD }],
    k3s: { role: 'agent', serverUrl: 'https://10.10.8.10:6443', token: { secret: K3S_TOKEN } },
  });
  server = await serveSite({ root: node.siteDir });
  stateImage = join(scratch, 'state.img');
  await writeStateImage(stateImage);
});
afterAll(() => server?.close());

async function boot(name: string, options: Pick<QemuBootOptions, 'secretImage' | 'drives'>) {
  const serialLog = join(scratch, `serial-${name}.log`);
  const result = await bootInQemu({
    iso,
    ...options,
    network: { forwards: [{ guestAddress: E2E_NODE.siteAddress, guestPort: 80, hostPort: server.port }], mac: E2E_NODE.mac },
    timeoutMs: BOOT_TIMEOUT_MS,
    serialLog,
    until: FINISHED,
  });
  const context = `boot "${name}" ended: ${result.reason} after ${result.durationMs} ms; serial log ${serialLog}, its end:\n${result.serial.slice(-5000)}`;
  expect(result.reason, context).toBe('matched');
  expect(result.serial, context).not.toContain('psyops-init: FATAL');
  // The k3s token is decrypted on the node but never logged.
  expect(result.serial, context).not.toContain(K3S_TOKEN);
  return { lines: serialLines(result.serial), status: statusFromSerial(result.serial), context };
}

describe('a node individuates itself from its secret volume and the signed site (QEMU, BIOS)', () => {
  it('first boot: hostname, secret mounted read-only, config verified and applied, kept on the state disk', async () => {
    const { lines, status, context } = await boot('first', { secretImage: node.secretImage, drives: [{ file: stateImage }] });
    expect(lines, context).toContain(`psyopsOS: postboot finished status=ok hostname=${E2E_NODE.name} config=${CONFIG_VERSION} secret=mounted-ro`);
    expect(status, context).toMatchObject({
      status: 'ok',
      hostname: E2E_NODE.name,
      secret: 'mounted-ro',
      siteUrl: `http://${E2E_NODE.siteAddress}`,
      config: { version: CONFIG_VERSION, source: 'site', signature: 'verified' },
      lastGood: 'state-volume',
      k3s: 'not-installed',
    });
    const step = (name: string) => status.steps.find((s) => s.name === name);
    expect(step('secret')?.reason, context).toMatch(/^\/dev\/sd[a-z] mounted read-only at \/mnt\/psyops-secret\/mount$/);
    expect(step('state')?.reason, context).toMatch(/^\/dev\/vd[a-z] mounted read-write at \/var\/lib\/psyopsOS$/);
    expect(step('network')?.reason, context).toMatch(/interfaces renamed \(psy0\).*networking up/);
    expect(step('config'), context).toMatchObject({ result: 'ok', reason: `version ${CONFIG_VERSION} applied (signature verified)` });
    expect(step('k3s')?.reason, context).toBe('k3s is not installed (config for a agent written)');
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
    ).toEqual(['secret:failed', 'state:skipped', 'network:ok', 'psynet:skipped', 'config:skipped', 'k3s:skipped']);
    expect(status.steps[0]!.reason, context).toMatch(/^no volume labelled psyops-secret/);
    expect(status.steps[2]!.reason, context).toMatch(/^DHCP fallback on eth0; networking up/);
  });
});
