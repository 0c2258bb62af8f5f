import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { CLI, errorLine, listing, psyops, tempDir } from './helpers.js';

// The real Nebula tools from Debian (tooling/setup.sh installs them).
const NEBULA_CERT = '/usr/bin/nebula-cert';
const NEBULA = '/usr/bin/nebula';
const root = tempDir('cli-psynet');

const nebulaCert = (args: string[], cwd: string) => execa(NEBULA_CERT, args, { cwd, timeout: 30_000, reject: false, env: { TZ: 'UTC' } });

async function newWorkspace(name: string, lighthouses?: Record<string, string[]>): Promise<string> {
  const ws = join(root, name);
  const init = await psyops(['init', ws, '--no-password']);
  expect(init.exitCode, init.stderr).toBe(0);
  if (lighthouses) {
    const configPath = join(ws, 'psyops.config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8'));
    config.psynet.lighthouses = lighthouses;
    writeFileSync(configPath, JSON.stringify(config, null, 2));
  }
  return ws;
}

/** Runs psyops in a workspace and expects success; returns stdout. */
async function ok(ws: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const result = await psyops(args, { cwd: ws, env });
  expect(result.exitCode, `psyops ${args.join(' ')}: ${result.stderr}`).toBe(0);
  expect(result.stderr).toBe('');
  return result.stdout;
}

/** Runs psyops in a workspace and expects the one-line error with `code`. */
async function fails(ws: string, args: string[], code: string): Promise<string> {
  const result = await psyops(args, { cwd: ws });
  expect(result.exitCode, result.stdout).toBe(1);
  const line = errorLine(result);
  expect(line.code, line.message).toBe(code);
  return line.message;
}

const snapshot = (ws: string) => ({
  psynet: listing(join(ws, 'psynet')),
  hosts: existsSync(join(ws, 'psynet', 'hosts')) ? listing(join(ws, 'psynet', 'hosts')) : [],
  registry: existsSync(join(ws, 'psynet', 'registry.json')) ? readFileSync(join(ws, 'psynet', 'registry.json'), 'utf8') : '',
});

describe('psyops psynet: allocate, CA, sign, print, verify', () => {
  let ws: string;
  beforeAll(async () => {
    ws = await newWorkspace('main', { lighthouse1: ['203.0.113.10:4242'] });
  });

  it('allocates per role pool, idempotently, with --json', async () => {
    const first = JSON.parse(await ok(ws, ['psynet', 'allocate', 'node1', '--role', 'node', '--json'], { SOURCE_DATE_EPOCH: '1790000000' }));
    expect(first).toEqual({
      name: 'node1',
      role: 'node',
      ip: '10.10.10.1',
      cidr: '10.10.10.1/22',
      groups: ['psyopsOS'],
      created: '2026-09-21T14:13:20Z',
      allocated: true,
      files: { registry: join(ws, 'psynet', 'registry.json') },
    });
    const again = JSON.parse(await ok(ws, ['psynet', 'allocate', 'node1', '--role', 'node', '--json']));
    expect(again).toMatchObject({ ip: '10.10.10.1', allocated: false, created: '2026-09-21T14:13:20Z' });
    expect(await ok(ws, ['psynet', 'allocate', 'lighthouse1', '-r', 'lighthouse'])).toBe('lighthouse1: 10.10.8.1/22 (lighthouse)\n');
    expect(await ok(ws, ['psynet', 'allocate', 'phone', '--role', 'client', '--ip', '10.10.9.20'])).toBe('phone: 10.10.9.20/22 (client)\n');
  });

  it('creates the CA with its key 0600 and refuses to replace it', async () => {
    const ca = JSON.parse(await ok(ws, ['psynet', 'ca', 'init', '--name', 'psyops test', '--json']));
    expect(ca.files).toEqual({ certificate: join(ws, 'psynet', 'ca.crt'), key: join(ws, 'psynet', 'ca.key') });
    expect(statSync(ca.files.key).mode & 0o777).toBe(0o600);
    // --duration 876000h is the default: 100 years.
    expect(Date.parse(ca.notAfter) - Date.parse(ca.notBefore)).toBe(876000 * 3600 * 1000);
    const printed = await nebulaCert(['print', '-json', '-path', ca.files.certificate], ws);
    expect(JSON.parse(printed.stdout)).toMatchObject({ fingerprint: ca.fingerprint, details: { name: 'psyops test', isCa: true, ips: ['10.10.8.0/22'] } });
    const before = readFileSync(ca.files.key);
    expect(await fails(ws, ['psynet', 'ca', 'init', '--name', 'again'], 'FILE_EXISTS')).toContain('refusing to overwrite');
    expect(readFileSync(ca.files.key)).toEqual(before);
  });

  it('signs host certificates that the real nebula-cert verifies and prints identically', async () => {
    const signed = JSON.parse(await ok(ws, ['psynet', 'sign', 'node1', '--groups', 'k3s, web', '--json']));
    expect(signed).toMatchObject({ name: 'node1', role: 'node', ip: '10.10.10.1/22', groups: ['psyopsOS', 'k3s', 'web'] });
    expect(signed.files).toEqual({
      certificate: join(ws, 'psynet/hosts/node1.crt'),
      key: join(ws, 'psynet/hosts/node1.key'),
      registry: join(ws, 'psynet/registry.json'),
    });
    expect(statSync(signed.files.key).mode & 0o777).toBe(0o600);
    const verified = await nebulaCert(['verify', '-ca', 'psynet/ca.crt', '-crt', 'psynet/hosts/node1.crt'], ws);
    expect(verified.stderr).toBe('');
    expect(verified.exitCode).toBe(0);
    const theirs = await nebulaCert(['print', '-json', '-path', 'psynet/hosts/node1.crt'], ws);
    const ours = await psyops(['psynet', 'print', 'psynet/hosts/node1.crt', '--json'], { cwd: ws, env: { TZ: 'UTC' } });
    expect(ours.stdout).toBe(`${theirs.stdout}\n`);
    const parsed = JSON.parse(theirs.stdout);
    expect(parsed.fingerprint).toBe(signed.fingerprint);
    expect(parsed.details).toMatchObject({
      name: 'node1',
      ips: ['10.10.10.1/22'],
      groups: ['psyopsOS', 'k3s', 'web'],
      notAfter: signed.notAfter,
      notBefore: signed.notBefore,
    });
    // Without --duration the certificate ends one second before the CA, as nebula-cert does.
    const ca = JSON.parse((await nebulaCert(['print', '-json', '-path', 'psynet/ca.crt'], ws)).stdout);
    expect(Date.parse(ca.details.notAfter) - Date.parse(parsed.details.notAfter)).toBe(1000);
    const textTheirs = await nebulaCert(['print', '-path', 'psynet/hosts/node1.crt'], ws);
    const textOurs = await psyops(['psynet', 'print', 'psynet/hosts/node1.crt'], { cwd: ws, env: { TZ: 'UTC' } });
    expect(textOurs.stdout).toBe(`${textTheirs.stdout}\n`);
    // The registry records fingerprint and expiry.
    const list = JSON.parse(await ok(ws, ['psynet', 'list', '--json']));
    expect(list.hosts.find((host: { name: string }) => host.name === 'node1')).toMatchObject({
      groups: ['psyopsOS', 'k3s', 'web'],
      certificate: { fingerprint: signed.fingerprint, notAfter: signed.notAfter },
    });
    expect(await ok(ws, ['psynet', 'verify', 'psynet/hosts/node1.crt'])).toContain('valid certificate for node1');
  });

  it('signs a public key made elsewhere (--in-pub) and a lighthouse with its group and a duration', async () => {
    expect((await nebulaCert(['keygen', '-out-key', 'phone.key', '-out-pub', 'phone.pub'], root)).exitCode).toBe(0);
    const phone = JSON.parse(await ok(ws, ['psynet', 'sign', 'phone', '--in-pub', join(root, 'phone.pub'), '--json']));
    expect(phone.files.key).toBeUndefined();
    expect(existsSync(join(ws, 'psynet/hosts/phone.key'))).toBe(false);
    const printed = JSON.parse((await nebulaCert(['print', '-json', '-path', phone.files.certificate], ws)).stdout);
    expect(printed.details).toMatchObject({ groups: ['clients'], ips: ['10.10.9.20/22'] });
    const pub = readFileSync(join(root, 'phone.pub'), 'utf8').split('\n').slice(1, -2).join('');
    expect(printed.details.publicKey).toBe(Buffer.from(pub, 'base64').toString('hex'));
    const lighthouse = JSON.parse(await ok(ws, ['psynet', 'sign', 'lighthouse1', '--duration', '8760h', '--json']));
    expect(lighthouse.groups).toEqual(['lighthouses']);
    expect(Date.parse(lighthouse.notAfter) - Date.parse(lighthouse.notBefore)).toBe(8760 * 3600 * 1000);
    expect((await nebulaCert(['verify', '-ca', 'psynet/ca.crt', '-crt', lighthouse.files.certificate], ws)).exitCode).toBe(0);
  });

  it('reads and verifies certificates made by nebula-cert with the workspace CA key', async () => {
    await ok(ws, ['psynet', 'allocate', 'byhand', '--role', 'node']);
    const made = await nebulaCert(
      [
        'sign',
        '-ca-crt',
        'psynet/ca.crt',
        '-ca-key',
        'psynet/ca.key',
        '-name',
        'byhand',
        '-ip',
        '10.10.10.2/22',
        '-out-crt',
        join(root, 'byhand.crt'),
        '-out-key',
        join(root, 'byhand.key'),
      ],
      ws,
    );
    expect(made.stderr).toBe('');
    expect(JSON.parse(await ok(ws, ['psynet', 'verify', join(root, 'byhand.crt'), '--json']))).toMatchObject({
      valid: true,
      name: 'byhand',
      ca: 'psyops test',
    });
    const theirs = await nebulaCert(['print', '-json', '-path', join(root, 'byhand.crt')], ws);
    expect((await psyops(['psynet', 'print', '--json', join(root, 'byhand.crt')], { cwd: ws, env: { TZ: 'UTC' } })).stdout).toBe(`${theirs.stdout}\n`);
  });

  it('writes Nebula configs that the real nebula -test accepts', async () => {
    for (const name of ['node1', 'lighthouse1']) {
      expect(await ok(ws, ['psynet', 'config', name])).toContain(`psynet/hosts/${name}.yml`);
      const file = join(ws, 'psynet', 'hosts', `${name}.yml`);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const test = await execa(NEBULA, ['-test', '-config', file], { timeout: 30_000, reject: false });
      expect(test.exitCode, test.stderr + test.stdout).toBe(0);
    }
    const node = readFileSync(join(ws, 'psynet/hosts/node1.yml'), 'utf8');
    expect(node).toMatch(/static_host_map:\n {2}10\.10\.8\.1:\n {4}- 203\.0\.113\.10:4242\n/);
    expect(node).toMatch(/am_lighthouse: false/);
    expect(node).toMatch(/hosts:\n {4}- 10\.10\.8\.1\n/);
    expect(node).toMatch(/inbound:\n {4}- port: any\n {6}proto: icmp\n {6}host: any\n {4}- port: any\n {6}proto: any\n {6}group: clients\n/);
    const lighthouse = readFileSync(join(ws, 'psynet/hosts/lighthouse1.yml'), 'utf8');
    expect(lighthouse).toMatch(/am_lighthouse: true/);
    expect(lighthouse).toMatch(/port: 4242/);
    // The same check fails when the key does not belong to the certificate: nebula -test is a real check.
    const swapped = node.replace(/key: \|\n( {4}.*\n){3}/, lighthouse.match(/key: \|\n( {4}.*\n){3}/)![0]);
    expect(swapped).not.toBe(node);
    writeFileSync(join(root, 'swapped.yml'), swapped);
    const bad = await execa(NEBULA, ['-test', '-config', join(root, 'swapped.yml')], { timeout: 30_000, reject: false });
    expect(bad.exitCode).not.toBe(0);
    // Paths instead of inline PEM, printed to stdout.
    const paths = await ok(ws, ['psynet', 'config', 'node1', '--pki-dir', '/etc/nebula', '--out', '-']);
    expect(paths).toContain('ca: /etc/nebula/ca.crt\n  cert: /etc/nebula/host.crt\n  key: /etc/nebula/host.key\n');
    // A host signed from its own public key has no key to inline.
    expect(await fails(ws, ['psynet', 'config', 'phone'], 'BAD_NEBULA_CONFIG')).toContain('--pki-dir');
    // A key that is not the certificate's pair is refused before nebula would refuse it.
    const nodeKey = join(ws, 'psynet/hosts/node1.key');
    const goodKey = readFileSync(nodeKey);
    writeFileSync(nodeKey, readFileSync(join(ws, 'psynet/hosts/lighthouse1.key')), { mode: 0o600 });
    const before = readFileSync(join(ws, 'psynet/hosts/node1.yml'), 'utf8');
    expect(await fails(ws, ['psynet', 'config', 'node1'], 'BAD_NEBULA_CONFIG')).toContain('is not the key of');
    expect(readFileSync(join(ws, 'psynet/hosts/node1.yml'), 'utf8')).toBe(before);
    writeFileSync(nodeKey, goodKey, { mode: 0o600 });
    // No lighthouse endpoint configured: a node config would be useless.
    const bare = await newWorkspace('bare');
    await ok(bare, ['psynet', 'ca', 'init', '--name', 'bare']);
    await ok(bare, ['psynet', 'allocate', 'n1', '--role', 'node']);
    await ok(bare, ['psynet', 'sign', 'n1']);
    expect(await fails(bare, ['psynet', 'config', 'n1'], 'BAD_NEBULA_CONFIG')).toContain('psynet.lighthouses');
    await fails(bare, ['psynet', 'config', 'nobody'], 'HOST_NOT_FOUND');
  });

  it('a psyopsOS lighthouse (node create --lighthouse): its config listens on its underlay port, other hosts reach it there; nebula -test accepts both', async () => {
    const lhWs = await newWorkspace('lh-node');
    await ok(lhWs, ['psynet', 'ca', 'init', '--name', 'lh-node']);
    await ok(lhWs, ['psynet', 'allocate', 'node1', '--role', 'node']);
    await ok(lhWs, ['psynet', 'sign', 'node1']);
    const volume = join(root, 'lh-node-volume');
    const created = await psyops(['node', 'create', 'lh-node', '--mac', '52:54:00:aa:bb:01', '--lighthouse', '192.168.77.1:4343', '--dir', volume], {
      cwd: lhWs,
    });
    expect(created.exitCode, created.stderr).toBe(0);
    // Its key exists only on its volume: the config refers to the files as the node has them.
    const pki = join(root, 'lh-node-pki');
    mkdirSync(pki);
    for (const [from, to] of [
      ['psynet.ca.crt', 'ca.crt'],
      ['psynet.host.crt', 'host.crt'],
      ['psynet.host.key', 'host.key'],
    ] as const)
      copyFileSync(join(volume, from), join(pki, to));
    const lighthouse = await ok(lhWs, ['psynet', 'config', 'lh-node', '--pki-dir', pki, '--out', '-']);
    expect(lighthouse).toMatch(/am_lighthouse: true/);
    expect(lighthouse).toMatch(/listen:\n {2}host: 0\.0\.0\.0\n {2}port: 4343\n/);
    const node = await ok(lhWs, ['psynet', 'config', 'node1', '--out', '-']);
    const lighthouseIp = JSON.parse(await ok(lhWs, ['psynet', 'list', '--json'])).hosts.find((host: { name: string }) => host.name === 'lh-node').ip;
    expect(node).toContain(`  ${lighthouseIp}:\n    - 192.168.77.1:4343\n`);
    for (const [name, yaml] of [
      ['lh-node', lighthouse],
      ['node1', node],
    ] as const) {
      const file = join(root, `${name}-with-lh-node.yml`);
      writeFileSync(file, yaml, { mode: 0o600 });
      const test = await execa(NEBULA, ['-test', '-config', file], { timeout: 30_000, reject: false });
      expect(test.exitCode, `${name}: ${test.stderr}${test.stdout}`).toBe(0);
    }
  });

  it('exports /etc/hosts lines and DNS records', async () => {
    expect(await ok(ws, ['psynet', 'hosts'])).toBe(
      '# psynet hosts, generated by psyops from the psynet registry\n' +
        '10.10.8.1\tlighthouse1.psynet.internal lighthouse1\n' +
        '10.10.9.20\tphone.psynet.internal phone\n' +
        '10.10.10.1\tnode1.psynet.internal node1\n' +
        '10.10.10.2\tbyhand.psynet.internal byhand\n',
    );
    const dns = JSON.parse(await ok(ws, ['psynet', 'dns', '--zone', 'psy.example.org']));
    expect(dns.zone).toBe('psy.example.org');
    expect(dns.records[0]).toEqual({ name: 'lighthouse1', type: 'A', address: '10.10.8.1', fqdn: 'lighthouse1.psy.example.org.' });
    expect(dns.records.map((record: { name: string }) => record.name)).toEqual(['lighthouse1', 'phone', 'node1', 'byhand']);
    expect(await ok(ws, ['psynet', 'list'])).toMatch(/^byhand +node +10\.10\.10\.2 +psyopsOS +not signed\n/);
  });

  it('releases a host; its address is handed out again only when the pool has no fresh one', async () => {
    expect(await ok(ws, ['psynet', 'release', 'byhand'])).toContain('released 10.10.10.2');
    expect(JSON.parse(await ok(ws, ['psynet', 'allocate', 'fresh', '--role', 'node', '--json'])).ip).toBe('10.10.10.3');
  });
});

describe('psyops psynet: bad input', () => {
  let ws: string;
  beforeAll(async () => {
    ws = await newWorkspace('bad');
  });

  it('unknown role, invalid name, address outside the pool or taken: typed errors, registry untouched', async () => {
    await ok(ws, ['psynet', 'allocate', 'node1', '--role', 'node']);
    const before = snapshot(ws);
    expect(await fails(ws, ['psynet', 'allocate', 'x', '--role', 'server'], 'UNKNOWN_ROLE')).toContain('lighthouse, client, node');
    expect(await fails(ws, ['psynet', 'allocate', 'Bad_Name', '--role', 'node'], 'INVALID_NAME')).toContain('DNS label');
    expect(await fails(ws, ['psynet', 'allocate', 'x', '--role', 'node', '--ip', '10.10.9.5'], 'ADDRESS_OUTSIDE_POOL')).toContain('10.10.10.0/23');
    await fails(ws, ['psynet', 'allocate', 'x', '--role', 'node', '--ip', '10.10.11.255'], 'ADDRESS_OUTSIDE_POOL');
    await fails(ws, ['psynet', 'allocate', 'x', '--role', 'node', '--ip', 'banana'], 'ADDRESS_OUTSIDE_POOL');
    expect(await fails(ws, ['psynet', 'allocate', 'x', '--role', 'node', '--ip', '10.10.10.1'], 'ADDRESS_TAKEN')).toContain('node1');
    await fails(ws, ['psynet', 'allocate', 'node1', '--role', 'client'], 'HOST_CONFLICT');
    await fails(ws, ['psynet', 'sign', 'nobody'], 'HOST_NOT_FOUND');
    expect(snapshot(ws)).toEqual(before);
    for (const args of [
      ['psynet', 'allocate', 'x'],
      ['psynet', 'allocate', 'x', '--role', 'node', '--bogus'],
      ['psynet', 'ca', 'init', '--name', 'x', '--bogus'],
      ['psynet', 'nonsense'],
    ]) {
      const usage = await psyops(args, { cwd: ws });
      expect(usage.exitCode, args.join(' ')).toBe(2);
      expect(errorLine(usage).code).toBe('USAGE');
    }
    // The workspace option works after the subcommand too, from any directory.
    expect(JSON.parse(await ok(root, ['psynet', 'list', '--json', '--workspace', ws])).hosts).toHaveLength(1);
  });

  it('a full pool is a clear error', async () => {
    const small = await newWorkspace('small');
    const configPath = join(small, 'psyops.config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8'));
    config.psynet.pools.lighthouse = '10.10.8.0/30';
    writeFileSync(configPath, JSON.stringify(config));
    for (const ip of ['10.10.8.1', '10.10.8.2', '10.10.8.3'])
      expect(JSON.parse(await ok(small, ['psynet', 'allocate', `l${ip.slice(-1)}`, '-r', 'lighthouse', '--json'])).ip).toBe(ip);
    expect(await fails(small, ['psynet', 'allocate', 'l4', '-r', 'lighthouse'], 'POOL_FULL')).toContain('10.10.8.0/30 is full');
    config.psynet.pools.client = '10.10.8.0/24';
    writeFileSync(configPath, JSON.stringify(config));
    expect(await fails(small, ['psynet', 'list'], 'BAD_ADDRESS_PLAN')).toContain('overlap');
  });

  it('lighthouse endpoints in the config are validated', async () => {
    const odd = await newWorkspace('odd-endpoints', { lighthouse1: ['203.0.113.10'] });
    expect(await fails(odd, ['psynet', 'list'], 'BAD_CONFIG')).toContain('/psynet/lighthouses/lighthouse1/0');
    const badName = await newWorkspace('odd-names', { Light_House: ['203.0.113.10:4242'] });
    expect(await fails(badName, ['psynet', 'list'], 'BAD_CONFIG')).toContain('/psynet/lighthouses');
  });

  it('CA missing', async () => {
    expect(await fails(ws, ['psynet', 'sign', 'node1'], 'CA_MISSING')).toContain('psyops psynet ca init');
    await fails(ws, ['psynet', 'verify', 'whatever.crt'], 'CA_MISSING');
    expect(snapshot(ws).hosts).toEqual([]);
  });

  it("CA key wrong: a key that is not the CA certificate's", async () => {
    await ok(ws, ['psynet', 'ca', 'init', '--name', 'bad-input CA']);
    const keyPath = join(ws, 'psynet', 'ca.key');
    const good = readFileSync(keyPath);
    expect((await nebulaCert(['ca', '-name', 'other', '-out-crt', 'other-ca.crt', '-out-key', 'other-ca.key'], root)).exitCode).toBe(0);
    writeFileSync(keyPath, readFileSync(join(root, 'other-ca.key')));
    const before = snapshot(ws);
    expect(await fails(ws, ['psynet', 'sign', 'node1'], 'CA_KEY_MISMATCH')).toContain('does not match');
    writeFileSync(keyPath, readFileSync(join(root, 'phone.key')));
    expect(await fails(ws, ['psynet', 'sign', 'node1'], 'MALFORMED_CERT')).toContain('NEBULA ED25519 PRIVATE KEY');
    expect(snapshot(ws)).toEqual(before);
    writeFileSync(keyPath, good);
  });

  it('certificate from another CA', async () => {
    expect(
      (
        await nebulaCert(
          [
            'sign',
            '-ca-crt',
            'other-ca.crt',
            '-ca-key',
            'other-ca.key',
            '-name',
            'alien',
            '-ip',
            '10.10.10.9/22',
            '-out-crt',
            'alien.crt',
            '-out-key',
            'alien.key',
          ],
          root,
        )
      ).exitCode,
    ).toBe(0);
    expect(await fails(ws, ['psynet', 'verify', join(root, 'alien.crt')], 'UNKNOWN_ISSUER')).toContain('another CA');
    expect((await psyops(['psynet', 'verify', join(root, 'alien.crt'), '--ca', join(root, 'other-ca.crt')])).exitCode).toBe(0);
    await fails(ws, ['psynet', 'verify', join(root, 'alien.key')], 'MALFORMED_CERT');
    await fails(ws, ['psynet', 'verify', join(root, 'missing.crt')], 'FILE_NOT_FOUND');
  });

  it('duration past the CA expiry, and a malformed duration', async () => {
    const before = snapshot(ws);
    expect(await fails(ws, ['psynet', 'sign', 'node1', '--duration', '900000h'], 'BAD_DURATION')).toContain('after the CA expires');
    await fails(ws, ['psynet', 'sign', 'node1', '--duration', '1y'], 'BAD_DURATION');
    await fails(ws, ['psynet', 'ca', 'init', '--name', 'x', '--duration', '0s'], 'BAD_DURATION');
    expect(snapshot(ws)).toEqual(before);
  });

  it('expired CA (made by nebula-cert with a one-second lifetime)', async () => {
    const expired = await newWorkspace('expired');
    await ok(expired, ['psynet', 'allocate', 'node1', '--role', 'node']);
    expect((await nebulaCert(['ca', '-name', 'short', '-duration', '1s', '-out-crt', 'psynet/ca.crt', '-out-key', 'psynet/ca.key'], expired)).exitCode).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const before = snapshot(expired);
    expect(await fails(expired, ['psynet', 'sign', 'node1'], 'CA_EXPIRED')).toContain('expired');
    expect(snapshot(expired)).toEqual(before);
    await fails(expired, ['psynet', 'verify', 'psynet/ca.crt'], 'CA_EXPIRED');
  });

  it('corrupted registry: refused with a clear error and never overwritten', async () => {
    const corrupt = await newWorkspace('corrupt');
    const registry = join(corrupt, 'psynet', 'registry.json');
    for (const text of ['{"version":1,"hosts":[{"name":"a"', '{"version":1,"hosts":[],"released":[],"surprise":1}']) {
      writeFileSync(registry, text);
      for (const args of [
        ['psynet', 'allocate', 'node1', '--role', 'node'],
        ['psynet', 'list'],
        ['psynet', 'hosts'],
        ['psynet', 'release', 'a'],
      ]) {
        expect(await fails(corrupt, args, 'CORRUPT_REGISTRY')).toContain('will not overwrite');
      }
      expect(readFileSync(registry, 'utf8')).toBe(text);
      expect(listing(join(corrupt, 'psynet'))).toEqual(['registry.json']);
    }
  });
});

describe('psyops psynet: concurrency', () => {
  it('20 allocate processes started at once get 20 distinct addresses and a registry that parses', async () => {
    const ws = await newWorkspace('concurrent');
    const names = Array.from({ length: 20 }, (_, i) => `node${String(i).padStart(2, '0')}`);
    const results = await Promise.all(
      names.map((name) =>
        execa('node', [CLI, 'psynet', 'allocate', name, '--role', 'node', '--json'], {
          cwd: ws,
          env: { PSYOPS_WORKSPACE: undefined },
          reject: false,
          timeout: 120_000,
        }),
      ),
    );
    for (const result of results) expect(result.exitCode, String(result.stderr)).toBe(0);
    const ips = results.map((result) => JSON.parse(String(result.stdout)).ip as string);
    expect(new Set(ips).size).toBe(20);
    expect([...ips].sort((a, b) => Number(a.split('.')[3]) - Number(b.split('.')[3]))).toEqual(names.map((_, i) => `10.10.10.${i + 1}`));
    const list = JSON.parse(await ok(ws, ['psynet', 'list', '--json']));
    expect(list.hosts.map((host: { name: string }) => host.name)).toEqual(names);
    expect(listing(join(ws, 'psynet'))).toEqual(['registry.json']);
    rmSync(ws, { recursive: true, force: true });
  });
});
