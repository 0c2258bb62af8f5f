import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { formatGrubEnv, parseGrubEnv } from '@psyops/core';
import { signBytes } from '@psyops/signing';
import { buildSite, serveSite, type Lighthouse } from '@psyops/siteapi';
import { NODE_PATHS, TempRootSystem, runPostboot, type NodeStatus, type PostbootOptions } from '../src/index.js';
import { dirMounter } from './dir-mounter.js';
import { FILE_SECRET, K3S_TOKEN, LIGHTHOUSES, MAC, NODE, makeWorld, siteFor, tempDir, type World } from './fixtures.js';

const FAST: PostbootOptions = { secretWaitMs: 0, siteAttempts: 3, siteRetryDelayMs: 100, fetchTimeoutMs: 5000 };

/** A node root as the image gives it: the site URL, and init scripts for sshd, nebula, k3s and the config's service. */
function nodeRoot(siteUrl: string, installed: string[] = ['sshd', 'nebula', 'k3s', 'app']): string {
  const root = tempDir('noderoot');
  const put = (path: string, text: string, mode = 0o644) => {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), text, { mode });
  };
  put('etc/psyopsOS/site.url', `${siteUrl}\n`);
  put('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n');
  for (const service of installed) put(`etc/init.d/${service}`, '#!/bin/sh\n', 0o755);
  for (const command of installed.filter((s) => s === 'nebula' || s === 'k3s')) put(`usr/bin/${command}`, '#!/bin/sh\n', 0o755);
  return root;
}

const read = (root: string, path: string) => readFileSync(join(root, path), 'utf8');
const mode = (root: string, path: string) => statSync(join(root, path)).mode & 0o777;
const statusOf = (root: string) => JSON.parse(read(root, NODE_PATHS.status)) as NodeStatus;
const lastLine = (system: TempRootSystem) => system.consoleLines.at(-1);

/** Runs the real `nebula -test` on the node's config, its PKI paths pointed into the temporary root; returns what it logged. */
async function nebulaTest(root: string): Promise<string> {
  const testConfig = join(root, 'nebula-test.yml');
  writeFileSync(testConfig, read(root, '/etc/nebula/config.yml').replaceAll('"/etc/nebula/', `"${root}/etc/nebula/`));
  const { stdout, stderr } = await promisify(execFile)('/usr/bin/nebula', ['-test', '-config', testConfig], { timeout: 30_000 });
  return `${stdout}${stderr}`;
}

/** Every file under root readable by others, with its content. */
function worldReadable(root: string): { path: string; text: string }[] {
  const out: { path: string; text: string }[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      const info = statSync(path);
      if (info.isDirectory()) walk(path);
      else if (info.mode & 0o004) out.push({ path: path.slice(root.length), text: readFileSync(path, 'utf8') });
    }
  };
  walk(root);
  return out;
}

/** A new boot on the same root: /run is a tmpfs, the rest (last good config) stays. */
const reboot = (root: string) => rmSync(join(root, 'run'), { recursive: true, force: true });

const stateVolumes = new Map<string, string>();
/** The psyops-state volume of a node root: a directory standing in for its file system, the same at every boot of that root. */
function stateVolume(root: string): string {
  let dir = stateVolumes.get(root);
  if (dir === undefined) {
    dir = tempDir('statevolume');
    stateVolumes.set(root, dir);
  }
  return dir;
}

/** The node's disks: its secret volume and its state volume, unless left out. */
function nodeDevices(world: World, root: string, { secret = true, state = true } = {}): Record<string, string> {
  return { ...(secret ? { 'psyops-secret': world.image } : {}), ...(state ? { 'psyops-state': stateVolume(root) } : {}) };
}

function bootSystem(world: World, root: string, disks: { secret?: boolean; state?: boolean } = {}): TempRootSystem {
  return new TempRootSystem({ root, devices: nodeDevices(world, root, disks), interfaces: [{ name: 'eth0', mac: MAC }] });
}

describe('postboot against a temporary root, a real secret image and a real served site', () => {
  let world: World;
  beforeAll(async () => {
    world = await makeWorld();
  });

  it('applies the signed config: hostname, psy0, SSH key, psynet, files, services, k3s, status', async () => {
    const root = nodeRoot(world.server.url);
    const system = bootSystem(world, root);
    const result = await runPostboot(system, { ...FAST, printStatus: true });

    expect(lastLine(system)).toBe(`psyopsOS: postboot finished status=ok hostname=${NODE} config=3 secret=mounted-ro`);
    expect(result.exitCode).toBe(0);
    const status = statusOf(root);
    expect(system.consoleLines.at(-2)).toBe(`psyopsOS: status ${JSON.stringify(status)}`);
    expect(status).toMatchObject({
      status: 'ok',
      hostname: NODE,
      secret: 'mounted-ro',
      config: { version: 3, source: 'site', signature: 'verified' },
      k3s: 'started',
      lastGood: 'state-volume',
      problems: [],
    });
    expect(status.steps.map((s) => `${s.name}:${s.result}`)).toEqual(['secret:ok', 'state:ok', 'network:ok', 'psynet:ok', 'config:ok', 'k3s:ok']);

    // The volume: mounted read-only under a root-only directory, its variables exported.
    expect(system.effects[0]).toEqual({ kind: 'mount', detail: `${world.image} ${NODE_PATHS.secretMount} ro` });
    expect(mode(root, NODE_PATHS.secretParent)).toBe(0o700);
    expect(read(root, NODE_PATHS.secretEnv)).toContain(`PSYOPSOS_NODENAME='${NODE}'\nPSYOPSOS_AGEKEY='/mnt/psyops-secret/mount/age.key'\n`);
    expect(read(root, NODE_PATHS.secretEnv)).toContain(`PSYOPSOS_SITE='${world.server.url.replace(/\/$/, '')}'`);

    // Individuation.
    expect(read(root, '/etc/hostname')).toBe(`${NODE}\n`);
    expect(system.effects).toContainEqual({ kind: 'hostname', detail: NODE });
    expect(read(root, '/etc/mactab')).toBe(`psy0 ${MAC}\n`);
    expect(system.effects).toContainEqual({ kind: 'rename', detail: 'eth0 psy0' });
    expect(read(root, '/etc/network/interfaces')).toContain('iface psy0 inet dhcp');
    expect(mode(root, '/etc/ssh/ssh_host_ed25519_key')).toBe(0o600);
    expect(read(root, '/etc/ssh/ssh_host_ed25519_key.pub')).toBe(`${world.secrets.sshHostPublicKey}\n`);

    // psynet: the real nebula accepts the config (PKI paths pointed into the temp root).
    expect(mode(root, '/etc/nebula/host.key')).toBe(0o600);
    const nebulaConfig = JSON.parse(read(root, '/etc/nebula/config.yml'));
    expect(nebulaConfig.static_host_map).toEqual({ '10.10.8.1': ['203.0.113.10:4242'] });
    expect(nebulaConfig.firewall.inbound).toContainEqual({ port: '22', proto: 'tcp', groups: ['admins'] });
    expect(nebulaConfig.lighthouse).toEqual({ am_lighthouse: false, interval: 60, hosts: ['10.10.8.1'] });
    expect(nebulaConfig.listen).toEqual({ host: '0.0.0.0', port: 0 });
    expect(status.steps.find((s) => s.name === 'psynet')!.reason).toBe('nebula started; 1 lighthouse(s), list version 1');
    await nebulaTest(root);

    // The config: files (a secret decrypted with the volume's age key), services, k3s.
    expect(read(root, '/etc/motd')).toBe(`welcome to ${NODE}\n`);
    expect(read(root, '/etc/app/token')).toBe(FILE_SECRET);
    expect(mode(root, '/etc/app/token')).toBe(0o600);
    expect(JSON.parse(read(root, NODE_PATHS.k3sConfig))).toEqual({ token: K3S_TOKEN, server: 'https://10.10.8.10:6443', 'node-name': NODE });
    expect(mode(root, NODE_PATHS.k3sConfig)).toBe(0o600);
    expect(system.startedServices).toEqual(['sshd', 'nebula', 'app', 'k3s']);
    expect(mode(root, NODE_PATHS.lastGoodConfig)).toBe(0o600);

    // Nothing secret in the log, on the console or in any world-readable file.
    const logs = readdirSync(join(root, 'var/log')).filter((n) => n.startsWith('postboot.'));
    expect(logs).toHaveLength(1);
    expect(mode(root, `/var/log/${logs[0]}`)).toBe(0o600);
    const identity = world.secrets.files.find((f) => f.name === 'age.key')!.data.split('\n')[1]!;
    const sshPrivate = world.secrets.files.find((f) => f.name === 'ssh_host_ed25519_key')!.data.split('\n')[1]!;
    const exposed = [read(root, `/var/log/${logs[0]}`), system.consoleLines.join('\n'), ...worldReadable(root).map((f) => f.text)].join('\n');
    for (const secret of [FILE_SECRET, K3S_TOKEN, identity, sshPrivate]) expect(exposed).not.toContain(secret);

    // Once per boot: a second run this boot does nothing.
    const effects = system.effects.length;
    const again = await runPostboot(system, FAST);
    expect(again).toEqual({ status: null, exitCode: 0 });
    expect(lastLine(system)).toMatch(/^psyopsOS: postboot already finished this boot/);
    expect(system.effects).toHaveLength(effects);
  });

  it('sshd and nebula installed but failing to start: their steps failed, the node degraded, the reasons on the console', async () => {
    const root = nodeRoot(world.server.url);
    const system = new (class extends TempRootSystem {
      override async startService(name: string): Promise<void> {
        if (name === 'sshd') throw new Error('/etc/init.d/sshd start failed (exit 1): sshd: not running after start');
        if (name === 'nebula') throw new Error('/etc/init.d/nebula start failed (exit 1): nebula: exited right after start');
        await super.startService(name);
      }
    })({ root, devices: nodeDevices(world, root), interfaces: [{ name: 'eth0', mac: MAC }] });
    const result = await runPostboot(system, { ...FAST, printStatus: true });
    expect(lastLine(system)).toBe(`psyopsOS: postboot finished status=degraded hostname=${NODE} config=3 secret=mounted-ro`);
    expect(result.exitCode).toBe(2);
    const status = statusOf(root);
    expect(status.steps.map((s) => `${s.name}:${s.result}`)).toEqual(['secret:ok', 'state:ok', 'network:failed', 'psynet:failed', 'config:ok', 'k3s:ok']);
    const step = (name: string) => status.steps.find((s) => s.name === name)!;
    expect(step('network').reason).toMatch(/^sshd failed: .*sshd: not running after start; interfaces renamed \(psy0\); networking up$/);
    expect(step('psynet').reason).toMatch(/^nebula failed to start: .*nebula: exited right after start$/);
    expect(system.consoleLines.at(-2)).toContain('sshd failed: ');
    expect(system.startedServices).toEqual(['app', 'k3s']);
  });

  it('a node the site lists as a lighthouse runs nebula as that lighthouse, also after the config rewrites its firewall', async () => {
    const siteDir = join(tempDir('lighthouse-site'), 'site');
    const self = { name: NODE, overlayIp: '10.10.10.1', publicAddresses: ['192.168.77.1:4242'] };
    await buildSite({
      outDir: siteDir,
      signingKey: world.signingKey,
      nodesDir: join(world.dir, 'nodes'),
      lighthouses: [...LIGHTHOUSES, self],
      timestamp: 1_790_000_000,
    });
    const server = await serveSite({ root: siteDir });
    try {
      const root = nodeRoot(server.url);
      const system = bootSystem(world, root);
      expect((await runPostboot(system, FAST)).exitCode).toBe(0);
      const status = statusOf(root);
      expect(status.steps.find((s) => s.name === 'psynet')).toMatchObject({
        result: 'ok',
        reason: 'nebula started as lighthouse on port 4242; 2 lighthouse(s), list version 1',
      });
      expect(system.startedServices).toContain('nebula');
      // Written again for the config's firewall rule (a restart): still the lighthouse.
      expect(system.effects).toContainEqual({ kind: 'restart', detail: 'nebula' });
      const nebulaConfig = JSON.parse(read(root, '/etc/nebula/config.yml'));
      expect(nebulaConfig.firewall.inbound).toContainEqual({ port: '22', proto: 'tcp', groups: ['admins'] });
      expect(nebulaConfig.lighthouse).toEqual({ am_lighthouse: true, interval: 60, hosts: [] });
      expect(nebulaConfig.listen).toEqual({ host: '0.0.0.0', port: 4242 });
      expect(nebulaConfig.static_host_map).toEqual({ '10.10.8.1': ['203.0.113.10:4242'] });
      // The real nebula accepts it, without a warning (it warns about a lighthouse that lists lighthouses).
      expect(await nebulaTest(root)).not.toMatch(/level=(warning|error)/);
    } finally {
      await server.close();
    }
  });

  it('a volume with a psynet certificate on an image without nebula: step failed, the node degraded, the config written', async () => {
    const cases: [remove: string[], missing: string][] = [
      [['etc/init.d/nebula', 'usr/bin/nebula'], 'command or service'],
      [['usr/bin/nebula'], 'command'],
      [['etc/init.d/nebula'], 'service'],
    ];
    for (const [remove, missing] of cases) {
      const root = nodeRoot(world.server.url);
      for (const path of remove) rmSync(join(root, path));
      const system = bootSystem(world, root);
      expect((await runPostboot(system, FAST)).exitCode, missing).toBe(2);
      expect(lastLine(system)).toBe(`psyopsOS: postboot finished status=degraded hostname=${NODE} config=3 secret=mounted-ro`);
      const status = statusOf(root);
      expect(status.steps.map((s) => `${s.name}:${s.result}`)).toEqual(['secret:ok', 'state:ok', 'network:ok', 'psynet:failed', 'config:ok', 'k3s:ok']);
      expect(status.steps.find((s) => s.name === 'psynet')!.reason).toBe(
        `nebula is not installed (no nebula ${missing}; config written; 1 lighthouse(s), list version 1)`,
      );
      expect(system.startedServices).not.toContain('nebula');
      expect(JSON.parse(read(root, '/etc/nebula/config.yml')).firewall.inbound).toContainEqual({ port: '22', proto: 'tcp', groups: ['admins'] });
    }
  });

  it('an image without what the volume and the config ask for (sshd, nebula, the service, k3s): each of those steps failed, status.json lists why', async () => {
    const root = nodeRoot(world.server.url, []);
    const system = bootSystem(world, root);
    const result = await runPostboot(system, FAST);
    expect(result.exitCode).toBe(2);
    expect(lastLine(system)).toBe(`psyopsOS: postboot finished status=degraded hostname=${NODE} config=3 secret=mounted-ro`);
    const status = statusOf(root);
    expect(status).toMatchObject({ status: 'degraded', k3s: 'not-installed', config: { version: 3, source: 'site', signature: 'verified' } });
    expect(status.problems).toEqual([
      expect.stringMatching(/^network: sshd is not installed in this image \(the secret volume has its host key\); /),
      expect.stringMatching(/^psynet: nebula is not installed \(no nebula command or service; config written; /),
      'config: version 3 applied (signature verified); service app is not installed',
      'k3s: k3s is not installed in this image (config for k3s agent written)',
    ]);
    // What the boot could do, it did: the config is applied and kept, the k3s config written for when k3s is there.
    expect(JSON.parse(read(root, NODE_PATHS.k3sConfig))).toMatchObject({ 'node-name': NODE });
    expect(read(root, NODE_PATHS.k3sConfD)).toContain('K3S_EXEC="agent"');
    expect(system.startedServices).toEqual([]);
  });

  it('refuses a tampered config, applies nothing from it and keeps the last good one', async () => {
    const root = nodeRoot(world.server.url);
    expect((await runPostboot(bootSystem(world, root), FAST)).exitCode).toBe(0);
    const published = join(world.siteDir, 'nodes', `${NODE}.json`);
    const original = readFileSync(published, 'utf8');
    try {
      writeFileSync(published, original.replace('"version": 3', '"version": 4').replace(`welcome to ${NODE}`, 'owned'));
      reboot(root);
      const system = bootSystem(world, root);
      const result = await runPostboot(system, FAST);
      expect(result.exitCode).toBe(2);
      expect(lastLine(system)).toBe(`psyopsOS: postboot finished status=degraded hostname=${NODE} config=3 secret=mounted-ro`);
      const status = statusOf(root);
      expect(status.config).toMatchObject({ version: 3, source: 'last-good', signature: 'refused' });
      expect(status.config.reason).toMatch(/signature check failed/);
      expect(status.steps.find((s) => s.name === 'config')).toMatchObject({ result: 'failed' });
      expect(read(root, '/etc/motd')).toBe(`welcome to ${NODE}\n`);

      // A node that never had a good config applies nothing.
      const fresh = nodeRoot(world.server.url);
      const freshSystem = bootSystem(world, fresh);
      expect((await runPostboot(freshSystem, FAST)).exitCode).toBe(2);
      expect(lastLine(freshSystem)).toBe(`psyopsOS: postboot finished status=degraded hostname=${NODE} config=none secret=mounted-ro`);
      expect(statusOf(fresh).config).toMatchObject({ version: null, source: null, signature: 'refused' });
      expect(statusOf(fresh).lastGood).toBe('state-volume');
      expect(() => read(fresh, '/etc/motd')).toThrow();
      expect(freshSystem.startedServices).not.toContain('app');
    } finally {
      writeFileSync(published, original);
    }
  });

  it('keeps the last good config on the psyops-state volume, where it outlives the RAM root', async () => {
    const state = tempDir('statevolume'); // stands in for the mounted ext4 file system
    const devices = { 'psyops-secret': world.image, 'psyops-state': state };
    const boot = (root: string) => new TempRootSystem({ root, devices, interfaces: [{ name: 'eth0', mac: MAC }] });
    const firstRoot = nodeRoot(world.server.url);
    const first = boot(firstRoot);
    expect((await runPostboot(first, FAST)).exitCode).toBe(0);
    expect(first.effects).toContainEqual({ kind: 'mount', detail: `${state} ${NODE_PATHS.stateDir} rw` });
    expect(statusOf(firstRoot)).toMatchObject({ lastGood: 'state-volume', config: { version: 3, source: 'site' } });
    expect(statusOf(firstRoot).steps[1]).toMatchObject({ name: 'state', result: 'ok' });
    // Each last good document and its signature in one file: one rename replaces both.
    expect(readdirSync(state).sort()).toEqual(['last-good-config.json', 'last-good-lighthouses.json']);
    expect(statSync(state).mode & 0o777).toBe(0o700);
    for (const name of readdirSync(state)) expect(statSync(join(state, name)).mode & 0o777).toBe(0o600);
    const kept = JSON.parse(readFileSync(join(state, 'last-good-config.json'), 'utf8'));
    expect(kept).toEqual({
      format: 'psyops-last-good/1',
      path: `nodes/${NODE}.json`,
      document: readFileSync(join(world.siteDir, 'nodes', `${NODE}.json`)).toString('base64'),
      signature: readFileSync(join(world.siteDir, 'nodes', `${NODE}.json.minisig`), 'utf8'),
    });

    const published = join(world.siteDir, 'nodes', `${NODE}.json`);
    const original = readFileSync(published, 'utf8');
    try {
      writeFileSync(published, original.replace(`welcome to ${NODE}`, 'owned'));
      // A power cycle: a new RAM root, the same state disk.
      const secondRoot = nodeRoot(world.server.url);
      const second = boot(secondRoot);
      expect((await runPostboot(second, FAST)).exitCode).toBe(2);
      expect(lastLine(second)).toBe(`psyopsOS: postboot finished status=degraded hostname=${NODE} config=3 secret=mounted-ro`);
      expect(statusOf(secondRoot)).toMatchObject({ lastGood: 'state-volume', config: { version: 3, source: 'last-good', signature: 'refused' } });
      expect(statusOf(secondRoot).steps.find((s) => s.name === 'config')!.reason).toMatch(
        /^version 3 applied \(last good from the state volume: .*signature check failed/,
      );
      expect(read(secondRoot, '/etc/motd')).toBe(`welcome to ${NODE}\n`);
    } finally {
      writeFileSync(published, original);
    }
  });

  it('a state volume that cannot be mounted: step failed, the last good config in RAM', async () => {
    const root = nodeRoot(world.server.url);
    const notADirectory = join(tempDir('badstate'), 'state.img');
    writeFileSync(notADirectory, 'not a file system');
    const system = new TempRootSystem({
      root,
      devices: { 'psyops-secret': world.image, 'psyops-state': notADirectory },
      interfaces: [{ name: 'eth0', mac: MAC }],
    });
    expect((await runPostboot(system, FAST)).exitCode).toBe(2);
    const status = statusOf(root);
    expect(status).toMatchObject({ status: 'degraded', lastGood: 'memory', config: { version: 3, source: 'site' } });
    expect(status.steps[1]).toMatchObject({ name: 'state', result: 'failed' });
    expect(status.steps[1]!.reason).toMatch(/cannot be mounted read-write at \/var\/lib\/psyopsOS: .*kept in RAM only$/);
    expect(mode(root, NODE_PATHS.lastGoodConfig)).toBe(0o600);
  });

  it('refuses a validly signed config of an older version than the last good one, after a power cycle too', async () => {
    // What an attacker replays: the site's version 3 pair, saved before version 5 was published.
    const path = join(world.siteDir, 'nodes', `${NODE}.json`);
    const version3 = { json: readFileSync(path), signature: readFileSync(`${path}.minisig`) };
    const root = nodeRoot(world.server.url);
    await world.publish(5);
    try {
      expect((await runPostboot(bootSystem(world, root), FAST)).exitCode).toBe(0);
      writeFileSync(path, version3.json);
      writeFileSync(`${path}.minisig`, version3.signature);
      // A new RAM root; the state volume is the same disk.
      const afterPowerCycle = nodeRoot(world.server.url);
      stateVolumes.set(afterPowerCycle, stateVolume(root));
      const system = bootSystem(world, afterPowerCycle);
      expect((await runPostboot(system, FAST)).exitCode).toBe(2);
      expect(statusOf(afterPowerCycle).config).toMatchObject({ version: 5, source: 'last-good', signature: 'refused' });
      expect(statusOf(afterPowerCycle).config.reason).toBe(`nodes/${NODE}.json: version 3 is older than the last good version 5`);
    } finally {
      await world.publish(3, { reset: true });
    }
  });

  it('without a secret volume: DHCP fallback, status failed, non-zero exit, no site requests', async () => {
    const root = nodeRoot(world.server.url);
    const system = bootSystem(world, root, { secret: false, state: false });
    const result = await runPostboot(system, { ...FAST, secretWaitMs: 1000, secretPollMs: 250 });
    expect(result.exitCode).toBe(1);
    expect(lastLine(system)).toBe('psyopsOS: postboot finished status=failed hostname=psyopsOS-unconfigured config=none secret=missing');
    expect(read(root, '/etc/network/interfaces')).toContain('auto eth0\niface eth0 inet dhcp');
    expect(system.effects).toContainEqual({ kind: 'networking', detail: 'ifup -a' });
    const status = statusOf(root);
    expect(status.steps.map((s) => `${s.name}:${s.result}`)).toEqual([
      'secret:failed',
      'state:failed',
      'network:ok',
      'psynet:skipped',
      'config:skipped',
      'k3s:skipped',
    ]);
    expect(status.steps[0]!.reason).toMatch(/no volume labelled psyops-secret/);
    // It waited a bounded time for the volume to appear, then went on: no loop.
    const sleeps = system.effects.filter((e) => e.kind === 'sleep');
    expect(sleeps.map((e) => e.detail)).toEqual(['250', '250', '250', '250']);
    expect(system.effects.filter((e) => e.kind === 'mount')).toEqual([]);
  });

  /** A node booted from disk slot B on its one trial: cmdline, boot media, watchdog, an ESP and slot B by label. */
  function trialBoot(root: string) {
    for (const dir of ['proc', 'media/boot', 'dev']) mkdirSync(join(root, dir), { recursive: true });
    writeFileSync(join(root, 'proc/cmdline'), 'psyopsos.slot=psyopsOS-B panic=10 psyopsos.trial=1\n');
    writeFileSync(join(root, 'media/boot/.psyopsOS-release'), 'r2 x86_64\n');
    writeFileSync(join(root, 'dev/watchdog'), '');
    const esp = tempDir('trialesp');
    mkdirSync(join(esp, 'boot/grub'), { recursive: true });
    writeFileSync(join(esp, 'boot/grub/grubenv'), formatGrubEnv({ psyops_good: 'A', psyops_try: '', psyops_trying: 'B' }));
    const mounts: string[] = [];
    const grubenv = () => parseGrubEnv(readFileSync(join(esp, 'boot/grub/grubenv')));
    return { mounter: dirMounter({ 'PSYOPS-ESP': esp, 'psyopsOS-B': tempDir('trialslot') }, mounts), grubenv };
  }

  it('a trial boot that ends ok marks its slot good before status.json says ok, and disarms the watchdog', async () => {
    const root = nodeRoot(world.server.url);
    const trial = trialBoot(root);
    const system = bootSystem(world, root);
    const result = await runPostboot(system, { ...FAST, mounter: trial.mounter });
    expect(result.exitCode).toBe(0);
    expect(statusOf(root)).toMatchObject({ status: 'ok', release: 'r2', slot: 'B', trial: true });
    expect(trial.grubenv().get('psyops_good')).toBe('B');
    expect(trial.grubenv().get('psyops_trying')).toBe('');
    expect(read(root, '/dev/watchdog')).toBe('V');
    expect(system.consoleLines).toContain('nodeboot: slot B marked good (r2)');
    expect(lastLine(system)).toMatch(/^psyopsOS: postboot finished status=ok /);
    expect(system.effects.filter((e) => e.detail === 'reboot')).toEqual([]);
  });

  it('a trial boot that fails records why and reboots after its last line; slot A stays the good one', async () => {
    const root = nodeRoot(world.server.url);
    const trial = trialBoot(root);
    const system = bootSystem(world, root, { secret: false, state: false });
    const result = await runPostboot(system, { ...FAST, mounter: trial.mounter });
    expect(result.exitCode).toBe(1);
    expect(trial.grubenv().get('psyops_good')).toBe('A');
    expect(read(root, '/dev/watchdog')).toBe('');
    expect(JSON.parse(read(root, '/var/lib/psyopsOS/trial-failure.json'))).toMatchObject({ slot: 'B', version: 'r2' });
    expect(system.consoleLines).toContainEqual(
      expect.stringMatching(/^nodeboot: trial of r2 in slot B failed: secret: .*; rebooting into the last good slot$/),
    );
    expect(lastLine(system)).toMatch(/^psyopsOS: postboot finished status=failed /);
    expect(system.effects.at(-1)).toEqual({ kind: 'run', detail: 'reboot' });
  });

  it('with an unreachable site: bounded retries with backoff, then the last good config', async () => {
    const root = nodeRoot(world.server.url);
    expect((await runPostboot(bootSystem(world, root), FAST)).exitCode).toBe(0);

    // A port that refuses connections: a server that was started and closed.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    writeFileSync(join(root, 'etc/psyopsOS/site.url'), `http://127.0.0.1:${port}\n`);
    reboot(root);
    const system = bootSystem(world, root);
    const result = await runPostboot(system, FAST);

    expect(result.exitCode).toBe(2);
    expect(lastLine(system)).toBe(`psyopsOS: postboot finished status=degraded hostname=${NODE} config=3 secret=mounted-ro`);
    // Three attempts (two waits, doubling) for the first document; later ones give up at once.
    expect(system.effects.filter((e) => e.kind === 'sleep').map((e) => e.detail)).toEqual(['100', '200']);
    const status = statusOf(root);
    expect(status.config).toMatchObject({ version: 3, source: 'last-good', signature: 'not-fetched' });
    expect(status.config.reason).toMatch(/unreachable/);
    expect(read(root, '/etc/app/token')).toBe(FILE_SECRET);
  });

  it('adds the blank-password toor user only when TESTONLYNOPROD.env asks, and warns on the console', async () => {
    const { generateNodeSecrets, writeSecretImage } = await import('../src/node-secrets.js');
    const image = join(tempDir('toorimage'), 'secret.img');
    const minisignPublicKey = world.secrets.files.find((f) => f.name === 'minisign.pubkey')!.data;
    await writeSecretImage(image, (await generateNodeSecrets({ name: NODE, mac: MAC, minisignPublicKey, testonlyToor: true })).files);
    const root = nodeRoot(world.server.url);
    writeFileSync(join(root, 'etc/shadow'), 'root:*:19000:0:99999:7:::\n', { mode: 0o600 });
    const system = new TempRootSystem({ root, devices: { 'psyops-secret': image }, interfaces: [{ name: 'eth0', mac: MAC }] });
    await runPostboot(system, FAST);
    expect(read(root, '/etc/passwd')).toBe('root:x:0:0:root:/root:/bin/sh\ntoor:x:0:0:TESTONLYNOPROD:/root:/bin/sh\n');
    expect(read(root, '/etc/shadow')).toBe('root:*:19000:0:99999:7:::\ntoor::0:0:99999:7:::\n');
    expect(mode(root, '/etc/shadow')).toBe(0o600);
    expect(system.consoleLines.filter((l) => l.includes('WARNING: TESTONLYNOPROD.env: user toor has a BLANK PASSWORD'))).toHaveLength(3);

    // The volume made by the main fixture has no TESTONLYNOPROD.env: no toor.
    const plain = nodeRoot(world.server.url);
    await runPostboot(bootSystem(world, plain), FAST);
    expect(read(plain, '/etc/passwd')).not.toContain('toor');
  });

  it('rejects a secret volume with a broken file: status failed, fallback networking', async () => {
    const root = nodeRoot(world.server.url);
    const image = join(tempDir('badimage'), 'secret.img');
    const { writeSecretImage } = await import('../src/node-secrets.js');
    await writeSecretImage(
      image,
      world.secrets.files.map((f) => (f.name === 'age.key' ? { ...f, data: 'not an age key\n' } : f)),
    );
    const system = new TempRootSystem({ root, devices: { 'psyops-secret': image }, interfaces: [{ name: 'eth0', mac: MAC }] });
    expect((await runPostboot(system, FAST)).exitCode).toBe(1);
    expect(lastLine(system)).toBe('psyopsOS: postboot finished status=failed hostname=psyopsOS-unconfigured config=none secret=invalid');
    expect(statusOf(root).steps[0]!.reason).toMatch(/age\.key must hold exactly one age identity/);
  });
});

describe('postboot on a hostile network and with hostile configs', () => {
  let world: World;
  beforeAll(async () => {
    world = await makeWorld();
  });

  it('a site that drips one byte a second: bounded by deadline × attempts, then the last good config and status.json', async () => {
    const root = nodeRoot(world.server.url);
    expect((await runPostboot(bootSystem(world, root), FAST)).exitCode).toBe(0);

    const drip = createServer((_request, response) => {
      response.writeHead(200, { 'content-length': '1000' });
      const timer = setInterval(() => response.write('{'), 1000);
      response.on('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => drip.listen(0, '127.0.0.1', resolve));
    try {
      writeFileSync(join(root, 'etc/psyopsOS/site.url'), `http://127.0.0.1:${(drip.address() as AddressInfo).port}\n`);
      reboot(root);
      const system = bootSystem(world, root);
      const began = Date.now();
      const result = await runPostboot(system, { ...FAST, siteAttempts: 2, fetchTimeoutMs: 1000 });
      // Two attempts at the first document (the lighthouses) at 1 s each; the config then fails at once.
      expect(Date.now() - began).toBeLessThan(2 * 1000 + 3000);
      expect(result.exitCode).toBe(2);
      const status = statusOf(root);
      expect(status.config).toMatchObject({ version: 3, source: 'last-good', signature: 'not-fetched' });
      expect(status.config.reason).toMatch(/unreachable \(psynet\/lighthouses\.json: GET .*: no complete answer within the deadline of 1000 ms, 2 attempts\)/);
      expect(read(root, '/etc/app/token')).toBe(FILE_SECRET);
    } finally {
      drip.closeAllConnections();
      await new Promise((resolve) => drip.close(resolve));
    }
  });

  it('a site answering 400 MiB: refused without retries, the last good config applied', async () => {
    const root = nodeRoot(world.server.url);
    expect((await runPostboot(bootSystem(world, root), FAST)).exitCode).toBe(0);
    let requests = 0;
    const huge = createServer((_request, response) => {
      requests++;
      response.writeHead(200, { 'content-length': String(400 * 1024 * 1024) });
      response.write(Buffer.alloc(64 * 1024));
    });
    await new Promise<void>((resolve) => huge.listen(0, '127.0.0.1', resolve));
    try {
      writeFileSync(join(root, 'etc/psyopsOS/site.url'), `http://127.0.0.1:${(huge.address() as AddressInfo).port}\n`);
      reboot(root);
      expect((await runPostboot(bootSystem(world, root), FAST)).exitCode).toBe(2);
      expect(requests).toBe(1);
      expect(statusOf(root).config).toMatchObject({ version: 3, source: 'last-good' });
      expect(statusOf(root).config.reason).toMatch(/Content-Length 419430400 exceeds the limit of 1048576 bytes, 1 attempt\)$/);
    } finally {
      huge.closeAllConnections();
      await new Promise((resolve) => huge.close(resolve));
    }
  });

  it('a site URL with credentials is refused, the password never echoed: in the image, and on the volume', async () => {
    const password = 'hunter2-c0ffee';
    const url = new URL(world.server.url);
    url.username = 'node';
    url.password = password;

    const root = nodeRoot(url.href);
    const system = bootSystem(world, root);
    expect((await runPostboot(system, FAST)).exitCode).toBe(2);
    const status = statusOf(root);
    expect(status.siteUrl).toBeNull();
    expect(status.steps[0]!.reason).toMatch(/ignoring \/etc\/psyopsOS\/site\.url: .*carries credentials \(user:password@\): refused/);
    const logs = readdirSync(join(root, 'var/log')).filter((n) => n.startsWith('postboot.'));
    expect([read(root, NODE_PATHS.status), read(root, `/var/log/${logs[0]}`), system.consoleLines.join('\n')].join('\n')).not.toContain(password);

    const { writeSecretImage } = await import('../src/node-secrets.js');
    const image = join(tempDir('credimage'), 'secret.img');
    await writeSecretImage(image, [...world.secrets.files, { name: 'site.url', data: `${url.href}\n`, mode: 0o644 }]);
    const volumeRoot = nodeRoot(world.server.url);
    const volumeSystem = new TempRootSystem({ root: volumeRoot, devices: { 'psyops-secret': image }, interfaces: [{ name: 'eth0', mac: MAC }] });
    expect((await runPostboot(volumeSystem, FAST)).exitCode).toBe(1);
    expect(statusOf(volumeRoot).secret).toBe('invalid');
    expect(statusOf(volumeRoot).steps[0]!.reason).toMatch(/site\.url: the site URL of 127\.0\.0\.1:\d+ carries credentials/);
    expect(read(volumeRoot, NODE_PATHS.status)).not.toContain(password);
  });

  it("the node's generated validators refuse bad service and package names too (the bundle's check)", async () => {
    const { validatorsSource } = await import('../src/config-validation.build.js');
    const file = join(tempDir('nodevalidators'), 'validators.mjs');
    writeFileSync(file, validatorsSource());
    const generated = (await import(pathToFileURL(file).href)) as typeof import('@psyops/siteapi/validators');
    const base = JSON.parse(readFileSync(join(world.siteDir, 'nodes', `${NODE}.json`), 'utf8'));
    expect(generated.checkNodeConfig({ ...base, packages: ['curl', 'py3-pip@edge', 'g++'], services: ['app', 'net.eth0'] }).ok).toBe(true);
    for (const [field, bad] of [
      ['services', '../evil'],
      ['services', '-x'],
      ['services', 'a/b'],
      ['services', 'a..b'],
      ['packages', '--force'],
      ['packages', '.hidden'],
      ['packages', 'a b'],
    ] as const) {
      expect(generated.checkNodeConfig({ ...base, [field]: [bad] }), bad).toMatchObject({
        ok: false,
        error: expect.stringMatching(new RegExp(`^${field}\\.0: `)),
      });
    }
  });

  it('a secret file without a mode lands 0600, a plain one 0644', async () => {
    const site = await siteFor(world, {
      version: 1,
      files: [
        { path: '/etc/app/default-secret', content: { secret: FILE_SECRET } },
        { path: '/etc/app/plain', content: 'plain\n' },
      ],
    });
    const published = JSON.parse(readFileSync(join(site.siteDir, 'nodes', `${NODE}.json`), 'utf8'));
    expect(published.files.map((f: { mode: string }) => f.mode)).toEqual(['0600', '0644']);
    const root = nodeRoot(site.url);
    expect((await runPostboot(bootSystem(world, root), FAST)).exitCode).toBe(0);
    expect(read(root, '/etc/app/default-secret')).toBe(FILE_SECRET);
    expect(mode(root, '/etc/app/default-secret')).toBe(0o600);
    expect(mode(root, '/etc/app/plain')).toBe(0o644);
  });

  it('a signed config with setuid bits not allowed, or a bad service or package name, is not applied', async () => {
    const site = await siteFor(world, { version: 1 });
    const base = JSON.parse(readFileSync(join(site.siteDir, 'nodes', `${NODE}.json`), 'utf8'));

    // Special bits: the file is refused on the node (site build refuses it before); with allowSpecialBits it is written.
    site.sign({
      ...base,
      files: [
        { path: '/usr/local/bin/suid', mode: '4755', content: '#!/bin/sh\n' },
        { path: '/usr/local/bin/allowed', mode: '2755', allowSpecialBits: true, content: '#!/bin/sh\n' },
      ],
    });
    const root = nodeRoot(site.url);
    expect((await runPostboot(bootSystem(world, root), FAST)).exitCode).toBe(2);
    expect(statusOf(root).problems).toContainEqual(
      'config: version 1 applied (signature verified); file /usr/local/bin/suid: mode 4755 has setuid, setgid or sticky bits and the file does not set allowSpecialBits',
    );
    expect(() => read(root, '/usr/local/bin/suid')).toThrow();
    expect(statSync(join(root, '/usr/local/bin/allowed')).mode & 0o7777).toBe(0o2755);

    for (const [field, bad] of [
      ['services', '../../../tmp/evil'],
      ['packages', '--allow-untrusted'],
      ['packages', 'curl/../x'],
    ] as const) {
      site.sign({ ...base, version: 2, [field]: [bad] });
      const fresh = nodeRoot(site.url);
      const system = bootSystem(world, fresh);
      expect((await runPostboot(system, FAST)).exitCode, bad).toBe(2);
      expect(statusOf(fresh).config, bad).toMatchObject({ version: null, signature: 'refused' });
      expect(statusOf(fresh).config.reason, bad).toMatch(
        new RegExp(`^nodes/${NODE}\\.json: ${field}\\.0: must be an ${field === 'services' ? 'OpenRC service' : 'APK package'} name`),
      );
      expect(
        system.effects
          .filter((e) => e.kind === 'run' || e.kind === 'start')
          .map((e) => e.detail)
          .join(' '),
        bad,
      ).not.toContain(bad);
    }
  });
});

describe('postboot against replayed, stale and half-deployed documents', () => {
  let world: World;
  beforeAll(async () => {
    world = await makeWorld();
  });

  /** A site of its own, built by site build from the world's node definition (as published last) with these options, served on 127.0.0.1. */
  async function servedSite(options: { lighthouses?: Lighthouse[]; expiresAt?: number; timestamp?: number; outDir?: string } = {}) {
    const siteDir = options.outDir ?? join(tempDir('site'), 'site');
    await buildSite({
      outDir: siteDir,
      signingKey: world.signingKey,
      nodesDir: join(world.dir, 'nodes'),
      lighthouses: options.lighthouses ?? LIGHTHOUSES,
      timestamp: options.timestamp ?? 1_790_000_000,
      secretCacheFile: join(world.dir, 'secret-cache.json'),
      ...(options.expiresAt !== undefined ? { expiresAt: options.expiresAt } : {}),
    });
    const server = await serveSite({ root: siteDir });
    onTestFinished(() => server.close());
    return { siteDir, url: server.url };
  }

  const pointAt = (root: string, url: string) => {
    writeFileSync(join(root, 'etc/psyopsOS/site.url'), `${url}\n`);
    reboot(root);
  };

  it('an older build of the same version is refused; the same bytes signed again are taken', async () => {
    const older = await siteFor(world, { version: 7, files: [{ path: '/etc/motd', content: 'the older build\n' }] });
    const newer = await siteFor(world, { version: 7, files: [{ path: '/etc/motd', content: 'the newer build\n' }] });
    const root = nodeRoot(newer.url);
    expect((await runPostboot(bootSystem(world, root), FAST)).exitCode).toBe(0);
    expect(read(root, '/etc/motd')).toBe('the newer build\n');

    pointAt(root, older.url);
    const system = bootSystem(world, root);
    expect((await runPostboot(system, FAST)).exitCode).toBe(2);
    expect(lastLine(system)).toBe(`psyopsOS: postboot finished status=degraded hostname=${NODE} config=7 secret=mounted-ro`);
    expect(statusOf(root).config).toMatchObject({ version: 7, source: 'last-good', signature: 'refused' });
    expect(statusOf(root).config.reason).toBe(
      `nodes/${NODE}.json: version 7 again but with other content than the last good one (an older build replayed, or the site was built without raising the version)`,
    );
    expect(read(root, '/etc/motd')).toBe('the newer build\n');

    // The newer build's bytes with a later signature (a rebuild at another SOURCE_DATE_EPOCH): the same config, taken.
    const path = join(newer.siteDir, 'nodes', `${NODE}.json`);
    writeFileSync(`${path}.minisig`, signBytes(readFileSync(path), world.signingKey, { trustedComment: `timestamp:1800000000\tfile:nodes/${NODE}.json` }));
    pointAt(root, newer.url);
    expect((await runPostboot(bootSystem(world, root), FAST)).exitCode).toBe(0);
    expect(statusOf(root).config).toMatchObject({ version: 7, source: 'site', signature: 'verified' });
  });

  it('without a state volume: degraded, no downgrade protection; after a power cycle an older config is taken, as it says', async () => {
    const path = join(world.siteDir, 'nodes', `${NODE}.json`);
    const version3 = { json: readFileSync(path), signature: readFileSync(`${path}.minisig`) };
    await world.publish(5);
    try {
      const root = nodeRoot(world.server.url);
      const system = bootSystem(world, root, { state: false });
      expect((await runPostboot(system, FAST)).exitCode).toBe(2);
      expect(lastLine(system)).toBe(`psyopsOS: postboot finished status=degraded hostname=${NODE} config=5 secret=mounted-ro`);
      const noProtection =
        'state: no volume labelled psyops-state: no downgrade protection (the last good config and its version are kept in RAM only, lost at reboot)';
      expect(statusOf(root)).toMatchObject({ status: 'degraded', lastGood: 'memory', config: { version: 5, source: 'site' }, problems: [noProtection] });

      writeFileSync(path, version3.json);
      writeFileSync(`${path}.minisig`, version3.signature);
      const afterPowerCycle = nodeRoot(world.server.url);
      expect((await runPostboot(bootSystem(world, afterPowerCycle, { state: false }), FAST)).exitCode).toBe(2);
      expect(statusOf(afterPowerCycle)).toMatchObject({ config: { version: 3, source: 'site', signature: 'verified' }, problems: [noProtection] });
    } finally {
      await world.publish(3, { reset: true });
    }
  });

  it('an expired signature is refused and the last good config applied, saying so; one not yet expired is taken', async () => {
    const now = Math.floor(Date.now() / 1000);
    const fresh = await servedSite({ expiresAt: now + 3600 });
    expect(readFileSync(join(fresh.siteDir, 'nodes', `${NODE}.json.minisig`), 'utf8')).toContain(`\texpires:${now + 3600}`);
    const root = nodeRoot(fresh.url);
    expect((await runPostboot(bootSystem(world, root), FAST)).exitCode).toBe(0);

    const stale = await servedSite({ expiresAt: now - 60 });
    pointAt(root, stale.url);
    expect((await runPostboot(bootSystem(world, root), FAST)).exitCode).toBe(2);
    const status = statusOf(root);
    expect(status.config).toMatchObject({ version: 3, source: 'last-good', signature: 'refused' });
    const expiredAt = new Date((now - 60) * 1000).toISOString();
    expect(status.config.reason).toBe(`nodes/${NODE}.json: its signature expired at ${expiredAt} (site build --valid-for)`);
    // The lighthouse list expired too: the last good one is used, and the step says why.
    expect(status.steps.find((s) => s.name === 'psynet')).toMatchObject({
      result: 'failed',
      reason: `nebula started; psynet/lighthouses.json: its signature expired at ${expiredAt} (site build --valid-for); the last good list, version 1: 1 lighthouse(s)`,
    });
    expect(read(root, '/etc/app/token')).toBe(FILE_SECRET);
  });

  it('an older lighthouse list is refused: nebula keeps the last good one', async () => {
    const moved = [{ ...LIGHTHOUSES[0]!, publicAddresses: ['198.51.100.20:4242'] }];
    // Built twice into one folder: the list changed, so its version rose to 2.
    const outDir = join(tempDir('site'), 'site');
    await servedSite({ outDir });
    const current = await servedSite({ outDir, lighthouses: moved });
    expect(JSON.parse(readFileSync(join(current.siteDir, 'psynet/lighthouses.json'), 'utf8')).version).toBe(2);
    const root = nodeRoot(current.url);
    expect((await runPostboot(bootSystem(world, root), FAST)).exitCode).toBe(0);
    expect(JSON.parse(read(root, '/etc/nebula/config.yml')).static_host_map).toEqual({ '10.10.8.1': ['198.51.100.20:4242'] });

    const replayed = await servedSite();
    pointAt(root, replayed.url);
    expect((await runPostboot(bootSystem(world, root), FAST)).exitCode).toBe(2);
    expect(statusOf(root).problems).toEqual([
      'psynet: nebula started; psynet/lighthouses.json: version 1 is older than the last good version 2; the last good list, version 2: 1 lighthouse(s)',
    ]);
    expect(statusOf(root).config).toMatchObject({ version: 3, source: 'site', signature: 'verified' });
    expect(JSON.parse(read(root, '/etc/nebula/config.yml')).static_host_map).toEqual({ '10.10.8.1': ['198.51.100.20:4242'] });
  });

  it('a pair caught mid-deploy (new document, old signature) is fetched once more and taken; a pair that stays mismatched is refused', async () => {
    const path = `nodes/${NODE}.json`;
    const staleSignature = readFileSync(join(world.siteDir, `${path}.minisig`));
    await world.publish(4);
    try {
      let staleAnswers = 1;
      const requests: string[] = [];
      const deploying = createServer((request, response) => {
        const url = request.url ?? '/';
        requests.push(url);
        if (url === `/${path}.minisig` && staleAnswers > 0) {
          staleAnswers--;
          response.end(staleSignature);
          return;
        }
        try {
          response.end(readFileSync(join(world.siteDir, decodeURIComponent(url))));
        } catch {
          response.writeHead(404).end();
        }
      });
      await new Promise<void>((resolve) => deploying.listen(0, '127.0.0.1', resolve));
      onTestFinished(() => new Promise<void>((resolve) => deploying.close(() => resolve())));
      const url = `http://127.0.0.1:${(deploying.address() as AddressInfo).port}`;

      const root = nodeRoot(url);
      const system = bootSystem(world, root);
      expect((await runPostboot(system, FAST)).exitCode).toBe(0);
      expect(statusOf(root).config).toMatchObject({ version: 4, source: 'site', signature: 'verified' });
      expect(requests.filter((r) => r.startsWith(`/${path}`))).toEqual([`/${path}`, `/${path}.minisig`, `/${path}`, `/${path}.minisig`]);
      expect(system.consoleLines).toContain(`nodeboot: ${path}: the signature does not match (a deploy under way?); fetching the pair again in 100 ms`);

      staleAnswers = 2;
      const again = nodeRoot(url);
      expect((await runPostboot(bootSystem(world, again), FAST)).exitCode).toBe(2);
      expect(statusOf(again).config).toMatchObject({ version: null, signature: 'refused' });
      expect(statusOf(again).config.reason).toMatch(new RegExp(`^${path.replace('.', '\\.')}: signature check failed`));
    } finally {
      await world.publish(3, { reset: true });
    }
  });
});
