import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildSite } from '@psyops/siteapi';
import { NODE_PATHS, TempRootSystem, runPostboot, type NodeStatus } from '../src/index.js';
import { runApply } from '../src/ops/apply.js';
import { makeOpsCommands } from '../src/ops/commands.js';
import { LIGHTHOUSES, MAC, NODE, makeWorld, tempDir, type World } from './fixtures.js';

/** A node root as the image gives it (site URL, init scripts), its state volume a directory. */
function nodeRoot(siteUrl: string): { root: string; state: string } {
  const root = tempDir('applyroot');
  const put = (path: string, text: string, mode = 0o644) => {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), text, { mode });
  };
  put('etc/psyopsOS/site.url', `${siteUrl}\n`);
  put('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n');
  for (const service of ['sshd', 'nebula', 'k3s', 'app', 'web']) put(`etc/init.d/${service}`, '#!/bin/sh\n', 0o755);
  for (const command of ['nebula', 'k3s']) put(`usr/bin/${command}`, '#!/bin/sh\n', 0o755);
  return { root, state: tempDir('applystate') };
}

const read = (root: string, path: string) => readFileSync(join(root, path), 'utf8');

describe('psyops-node apply: the signed config fetched from a real site on 127.0.0.1, verified and applied without a reboot', () => {
  let world: World;
  beforeAll(async () => {
    world = await makeWorld();
  });

  /** Publishes this node's definition with `config` (signed with the world's key) into the served site. */
  async function publish(config: object, { reset = false } = {}): Promise<void> {
    // A site rebuilt from scratch (site build refuses to publish an older version over a newer one).
    if (reset) rmSync(join(world.siteDir, 'nodes', `${NODE}.json`), { force: true });
    const nodesDir = tempDir('applynodes');
    writeFileSync(join(nodesDir, `${NODE}.json`), JSON.stringify({ ageRecipient: world.secrets.ageRecipient, config }));
    await buildSite({ outDir: world.siteDir, signingKey: world.signingKey, nodesDir, lighthouses: LIGHTHOUSES, timestamp: 1_790_000_000 });
  }

  const baseConfig = {
    files: [
      { path: '/etc/motd', content: 'config version 10\n' },
      { path: '/etc/app/token', mode: '0600', content: { secret: 'token-10' } },
    ],
    services: ['app'],
    firewall: [{ port: 22, proto: 'tcp', groups: ['admins'] }],
  };

  it('applies only what changed, keeps it as the last good config, updates status.json; then reports unchanged', async () => {
    await publish({ version: 10, ...baseConfig });
    const { root, state } = nodeRoot(world.server.url);
    const system = () =>
      new TempRootSystem({ root, devices: { 'psyops-secret': world.image, 'psyops-state': state }, interfaces: [{ name: 'eth0', mac: MAC }] });
    const boot = await runPostboot(system(), { secretWaitMs: 0, siteAttempts: 2, siteRetryDelayMs: 50 });
    expect(boot.status?.config).toMatchObject({ version: 10, source: 'site' });

    await publish({
      version: 11,
      ...baseConfig,
      files: [
        baseConfig.files[0],
        { path: '/etc/app/token', mode: '0600', content: { secret: 'token-11' } },
        { path: '/etc/web.conf', mode: '0640', content: 'port=80\n' },
      ],
      services: ['app', 'web'],
      firewall: [...baseConfig.firewall, { port: 80, proto: 'tcp', groups: ['web'] }],
    });
    const out: string[] = [];
    const err: string[] = [];
    const applying = system();
    const commands = makeOpsCommands({ system: () => applying, out: (t) => out.push(t), err: (t) => err.push(t), env: {} });
    expect(await commands.apply(['--json']), err.join('')).toBe(0);
    expect(JSON.parse(out.join(''))).toEqual({
      action: 'applied',
      from: 10,
      to: 11,
      changed: ['file /etc/app/token', 'file /etc/web.conf', 'service web started', 'nebula firewall (2 rule(s)), nebula restarted'],
      problems: [],
    });
    expect(read(root, '/etc/app/token')).toBe('token-11');
    expect(statSync(join(root, '/etc/web.conf')).mode & 0o777).toBe(0o640);
    const inbound = (JSON.parse(read(root, '/etc/nebula/config.yml')) as { firewall: { inbound: { port: unknown; groups?: string[] }[] } }).firewall.inbound;
    expect(inbound).toContainEqual(expect.objectContaining({ port: '80', groups: ['web'] }));
    expect(applying.effects.filter((e) => e.kind === 'start' || e.kind === 'restart').map((e) => `${e.kind} ${e.detail}`)).toEqual([
      'start web',
      'restart nebula',
    ]);
    const status = JSON.parse(read(root, NODE_PATHS.status)) as NodeStatus;
    expect(status.config).toEqual({ version: 11, source: 'site', signature: 'verified' });
    expect(status.status).toBe(boot.status?.status);
    // Kept as the last good config: the next boot (or apply) starts from 11.
    expect(JSON.parse(readFileSync(join(state, 'last-good-config.json'), 'utf8'))).toMatchObject({ format: 'psyops-last-good/1', path: `nodes/${NODE}.json` });

    const human: string[] = [];
    const again = makeOpsCommands({ system, out: (t) => human.push(t), err: (t) => human.push(t), env: {} });
    expect(await again.apply([])).toBe(0);
    expect(human.join('')).toBe('config version 11 unchanged\n');
  });

  it('refuses an older config (a replay) and a tampered one with one line, and writes nothing', async () => {
    const { root, state } = nodeRoot(world.server.url);
    const system = () => new TempRootSystem({ root, devices: { 'psyops-secret': world.image, 'psyops-state': state } });
    await publish({ version: 20, ...baseConfig });
    await runPostboot(system(), { secretWaitMs: 0, siteAttempts: 2, siteRetryDelayMs: 50 });
    const motd = read(root, '/etc/motd');

    await publish({ version: 19, ...baseConfig, files: [{ path: '/etc/motd', content: 'replayed\n' }] }, { reset: true });
    await expect(runApply(system(), { siteAttempts: 1, siteRetryDelayMs: 10 })).rejects.toThrow(/version 19 is older than the last good version 20/);

    await publish({ version: 21, ...baseConfig, files: [{ path: '/etc/motd', content: 'tampered\n' }] });
    const path = join(world.siteDir, 'nodes', `${NODE}.json`);
    writeFileSync(path, readFileSync(path, 'utf8').replace('tampered', 'tamperex'));
    const err: string[] = [];
    const commands = makeOpsCommands({ system, out: (t) => err.push(t), err: (t) => err.push(t), env: {} });
    expect(await commands.apply([])).toBe(1);
    expect(err.join('')).toMatch(/^psyops-node: nodes\/test-node-1\.json: signature check failed .*\(CONFIG_REJECTED\)\n$/);
    expect(read(root, '/etc/motd')).toBe(motd);
  });

  it('a boot degraded only by a refused config is reported ok once a good config is applied', async () => {
    const { root, state } = nodeRoot(world.server.url);
    const system = () => new TempRootSystem({ root, devices: { 'psyops-secret': world.image, 'psyops-state': state } });
    await publish({ version: 30, ...baseConfig }, { reset: true });
    const path = join(world.siteDir, 'nodes', `${NODE}.json`);
    writeFileSync(path, readFileSync(path, 'utf8').replace('config version 10', 'config version XX'));
    const boot = await runPostboot(system(), { secretWaitMs: 0, siteAttempts: 1, siteRetryDelayMs: 10 });
    expect(boot.status).toMatchObject({ status: 'degraded', config: { version: null, signature: 'refused' } });
    expect(boot.status?.problems).toEqual([expect.stringMatching(/^config: /)]);

    await publish({ version: 31, ...baseConfig });
    const report = await runApply(system(), { siteAttempts: 1 });
    expect(report).toMatchObject({ action: 'applied', from: null, to: 31, problems: [] });
    expect(report.changed).toContain('file /etc/motd');
    const status = JSON.parse(read(root, NODE_PATHS.status)) as NodeStatus;
    expect(status).toMatchObject({ status: 'ok', problems: [], config: { version: 31, source: 'site', signature: 'verified' } });
    expect(status.steps.find((step) => step.name === 'config')).toMatchObject({
      result: 'ok',
      reason: expect.stringMatching(/^version 31 applied by psyops-node apply/),
    });
  });

  it('without a mounted secret volume: refused (NO_SECRET_VOLUME)', async () => {
    const { root } = nodeRoot(world.server.url);
    await expect(runApply(new TempRootSystem({ root }))).rejects.toMatchObject({ code: 'NO_SECRET_VOLUME' });
  });
});
