import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Lighthouse } from '@psyops/siteapi/schemas';
import { nodeNebulaConfig } from '../src/nebula.js';
import { tempDir } from './fixtures.js';

const NEBULA = '/usr/bin/nebula';
/** Every psynet host may reach telepathy on a node. */
const TELEPATHY_RULE = { port: '7453', proto: 'tcp', host: 'any' };
const NEBULA_CERT = '/usr/bin/nebula-cert';
// Addresses only: nebula -test resolves names in static_host_map and fails without DNS.
const LIGHTHOUSES: Lighthouse[] = [
  { name: 'lh-b', overlayIp: '10.10.8.2', publicAddresses: ['198.51.100.2:4243'] },
  { name: 'lh-a', overlayIp: '10.10.8.1', publicAddresses: ['192.168.77.1:4242', '[2001:db8::1]:4242', '203.0.113.1:14242'] },
];

/** What the real `nebula -test` says of a config: its exit code and its log lines at warning level or above. */
async function nebulaTest(file: string, config: string): Promise<{ exitCode: number | undefined; complaints: string[] }> {
  writeFileSync(file, config);
  const result = await new Promise<{ exitCode: number | undefined; output: string }>((resolve) =>
    execFile(NEBULA, ['-test', '-config', file], { timeout: 30_000 }, (error, stdout, stderr) =>
      resolve({ exitCode: error ? (typeof error.code === 'number' ? error.code : undefined) : 0, output: `${stdout}\n${stderr}` }),
    ),
  );
  const complaints = result.output.split('\n').filter((line) => /level=(warning|error|fatal)/.test(line));
  return { exitCode: result.exitCode, complaints };
}

describe('the node Nebula config, checked by the real nebula with certificates from the real nebula-cert', () => {
  const dir = tempDir('nebula-config');
  const pki = (name: string) => ({ ca: join(dir, 'ca.crt'), cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) });
  beforeAll(async () => {
    const cert = (args: string[]) => promisify(execFile)(NEBULA_CERT, args, { cwd: dir, timeout: 30_000 });
    await cert(['ca', '-name', 'psyops test', '-out-crt', 'ca.crt', '-out-key', 'ca.key']);
    await cert(['sign', '-name', 'lh-a', '-ip', '10.10.8.1/22', '-groups', 'lighthouses', '-out-crt', 'lh-a.crt', '-out-key', 'lh-a.key']);
    await cert(['sign', '-name', 'node-1', '-ip', '10.10.10.1/22', '-groups', 'psyopsOS', '-out-crt', 'node-1.crt', '-out-key', 'node-1.key']);
  });

  it('a node the lighthouse list names is that lighthouse: no lighthouses of its own, its port, itself not in static_host_map', async () => {
    const text = nodeNebulaConfig({ pki: pki('lh-a'), lighthouses: LIGHTHOUSES, self: 'lh-a', firewall: [{ port: 22, proto: 'tcp', groups: ['admins'] }] });
    const config = JSON.parse(text);
    expect(config.lighthouse).toEqual({ am_lighthouse: true, interval: 60, hosts: [] });
    // The first endpoint's port; dual-stack because it is also reached at an IPv6 address.
    expect(config.listen).toEqual({ host: '[::]', port: 4242 });
    expect(config.static_host_map).toEqual({ '10.10.8.2': ['198.51.100.2:4243'] });
    expect(config.firewall.inbound).toContainEqual({ port: '22', proto: 'tcp', groups: ['admins'] });
    expect(config.firewall.inbound).toContainEqual(TELEPATHY_RULE);
    expect(await nebulaTest(join(dir, 'lh-a.yml'), text)).toEqual({ exitCode: 0, complaints: [] });

    // The same node treated as a plain node that lists itself as a lighthouse is refused by nebula: the check is real.
    const confused = { ...config, lighthouse: { am_lighthouse: false, interval: 60, hosts: ['10.10.8.1', '10.10.8.2'] } };
    const refused = await nebulaTest(join(dir, 'confused.yml'), JSON.stringify(confused));
    expect(refused.exitCode).toBe(1);
    expect(refused.complaints.join('\n')).toMatch(/lighthouse 10\.10\.8\.1 does not have a static_host_map entry/);
    // And a lighthouse that lists lighthouses is what nebula warns about.
    const listing = { ...config, lighthouse: { am_lighthouse: true, interval: 60, hosts: ['10.10.8.2'] } };
    expect((await nebulaTest(join(dir, 'listing.yml'), JSON.stringify(listing))).complaints.join('\n')).toMatch(/upstream lighthouses exist/);
  });

  it('a lighthouse reached only at IPv4 addresses listens on 0.0.0.0', () => {
    const config = JSON.parse(nodeNebulaConfig({ pki: pki('lh-b'), lighthouses: LIGHTHOUSES, self: 'lh-b' }));
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 4243 });
    expect(Object.keys(config.static_host_map)).toEqual(['10.10.8.1']);
  });

  it('a node the list does not name: every lighthouse in static_host_map and lighthouse.hosts, a random port', async () => {
    for (const self of ['node-1', undefined]) {
      const text = nodeNebulaConfig({ pki: pki('node-1'), lighthouses: LIGHTHOUSES, ...(self !== undefined ? { self } : {}) });
      const config = JSON.parse(text);
      expect(config.lighthouse).toEqual({ am_lighthouse: false, interval: 60, hosts: ['10.10.8.1', '10.10.8.2'] });
      expect(config.listen).toEqual({ host: '0.0.0.0', port: 0 });
      // telepathy is reachable from psynet, and nothing else but ICMP and the clients group without a rule of the config.
      expect(config.firewall.inbound).toEqual([{ port: 'any', proto: 'icmp', host: 'any' }, { port: 'any', proto: 'any', group: 'clients' }, TELEPATHY_RULE]);
      expect(config.static_host_map).toEqual({
        '10.10.8.1': ['192.168.77.1:4242', '[2001:db8::1]:4242', '203.0.113.1:14242'],
        '10.10.8.2': ['198.51.100.2:4243'],
      });
      expect(await nebulaTest(join(dir, 'node-1.yml'), text)).toEqual({ exitCode: 0, complaints: [] });
    }
  });

  it('refuses to make a lighthouse of a node whose own first address has no port', () => {
    const lighthouses = [{ name: 'lh-c', overlayIp: '10.10.8.3', publicAddresses: ['192.0.2.3'] }];
    expect(() => nodeNebulaConfig({ pki: pki('lh-a'), lighthouses, self: 'lh-c' })).toThrow(
      expect.objectContaining({
        code: 'CONFIG_REJECTED',
        message: 'the site lists this node (lh-c) as a lighthouse at "192.0.2.3", which has no port to listen on',
      }),
    );
  });
});
