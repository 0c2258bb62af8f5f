import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { allocateHost, initCa, psynetFiles, releaseHost, resolvePlan, updateRegistry } from '@psyops/psynet';
import { encodePublicKey, generateKeyPair } from '@psyops/signing';
import { createNode, readNodeLighthouses, sshKeyFingerprint, type CreateNodeOptions } from '../src/node-create.js';
import { tempDir } from './fixtures.js';

const run = promisify(execFile);
const MAC = '52:54:00:12:34:56';
// A node pool of three addresses (.1 to .3), so that a released address is the only one left.
const PLAN = { network: '10.10.8.0/22', pools: { lighthouse: '10.10.8.0/24', client: '10.10.9.0/24', node: '10.10.10.0/30' } };

// A mkfs.ext4 that always fails, first on PATH: a secret image that cannot be written after its certificate was signed.
// Folders (kind 'dir') need no mkfs, so the rest of this file is unaffected.
const fakeBin = tempDir('fake-mkfs');
writeFileSync(join(fakeBin, 'mkfs.ext4'), '#!/bin/sh\necho "mkfs.ext4: no space left on device" >&2\nexit 1\n', { mode: 0o755 });
process.env.PATH = `${fakeBin}:${process.env.PATH}`;

describe('createNode', () => {
  const work = tempDir('node-create');
  const psynet = { dir: join(work, 'psynet'), plan: PLAN };
  const files = psynetFiles(psynet.dir);
  const nodesDir = join(work, 'nodes');
  const options = (name: string, output: CreateNodeOptions['output'], extra: Partial<CreateNodeOptions> = {}): CreateNodeOptions => ({
    name,
    mac: MAC,
    output,
    minisignPublicKeyFile: join(work, 'minisign.pub'),
    psynet,
    nodesDir,
    ...extra,
  });
  const registry = () => readFileSync(files.registry, 'utf8');

  beforeAll(async () => {
    mkdirSync(nodesDir);
    writeFileSync(join(work, 'minisign.pub'), encodePublicKey(generateKeyPair()));
    await initCa(files, { name: 'psyops test', durationSeconds: 86_400, now: Math.floor(Date.now() / 1000), network: resolvePlan(PLAN).network });
  });

  it('refuses an existing node without rekey, and with rekey keeps its address and reports what it replaced', async () => {
    const first = await createNode(options('n1', { kind: 'dir', path: join(work, 'n1') }));
    expect(first.replaced).toBeUndefined();
    expect(first.sshHostKeyFingerprint).toBe(sshKeyFingerprint(first.sshHostPublicKey));
    const before = registry();
    await expect(createNode(options('n1', { kind: 'dir', path: join(work, 'n1-again') }))).rejects.toMatchObject({ code: 'NODE_EXISTS' });
    await expect(createNode(options('n1', { kind: 'dir', path: join(work, 'n1') }, { force: true }))).rejects.toMatchObject({ code: 'NODE_EXISTS' });
    expect(registry()).toBe(before);
    expect(existsSync(join(work, 'n1-again'))).toBe(false);

    const second = await createNode(options('n1', { kind: 'dir', path: join(work, 'n1-again') }, { rekey: true }));
    expect(second.psynetAddress).toBe(first.psynetAddress);
    expect(second.replaced).toEqual({
      ageRecipient: first.ageRecipient,
      sshHostPublicKey: first.sshHostPublicKey,
      sshHostKeyFingerprint: first.sshHostKeyFingerprint,
      certificateFingerprint: first.certificateFingerprint,
      certificateNotAfter: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      psynetAddress: first.psynetAddress,
    });
    expect(second.certificateFingerprint).not.toBe(first.certificateFingerprint);
    expect(JSON.parse(registry()).hosts.find((h: { name: string }) => h.name === 'n1').certificate.fingerprint).toBe(second.certificateFingerprint);

    // The fingerprint is the one the real ssh-keygen prints.
    writeFileSync(join(work, 'n1.pub'), `${second.sshHostPublicKey}\n`);
    const { stdout } = await run('ssh-keygen', ['-l', '-f', join(work, 'n1.pub')], { timeout: 30_000 });
    expect(stdout.split(' ')[1]).toBe(second.sshHostKeyFingerprint);
  });

  it('a volume that cannot be written gives a released address back to the released list, byte for byte', async () => {
    await updateRegistry(files.registry, (r) => {
      const plan = resolvePlan(PLAN);
      allocateHost(r, plan, { name: 'n2', role: 'node', created: '2025-01-01T00:00:00Z' });
      allocateHost(r, plan, { name: 'n3', role: 'node', created: '2025-01-01T00:00:00Z' });
      releaseHost(r, 'n2');
    });
    const before = registry();
    expect(JSON.parse(before).released).toEqual(['10.10.10.2']);
    const hosts = readdirSync(files.hostsDir).sort();
    await expect(createNode(options('n4', { kind: 'image', path: join(work, 'n4.img') }))).rejects.toMatchObject({ code: 'TOOL_FAILED' });
    expect(registry()).toBe(before);
    expect(readdirSync(files.hostsDir).sort()).toEqual(hosts);
    expect(existsSync(join(nodesDir, 'n4.json'))).toBe(false);
    expect(readdirSync(work).filter((name) => name.includes('n4'))).toEqual([]);

    // The same address is then given to the node once its volume can be written.
    const made = await createNode(options('n4', { kind: 'dir', path: join(work, 'n4') }));
    expect(made.psynetAddress).toBe('10.10.10.2');
  });

  it('a lighthouse: address from the lighthouse pool, certificate in its group, underlay recorded; kept by rekey', async () => {
    const definitionOf = (name: string) => JSON.parse(readFileSync(join(nodesDir, `${name}.json`), 'utf8'));
    const made = await createNode(
      options('lh-a', { kind: 'dir', path: join(work, 'lh-a') }, { lighthouse: { underlay: ['192.168.77.1:4242', '[2001:db8::1]:4242'] } }),
    );
    expect(made).toMatchObject({ role: 'lighthouse', psynetAddress: '10.10.8.1', underlay: ['192.168.77.1:4242', '[2001:db8::1]:4242'] });
    expect(definitionOf('lh-a')).toEqual({
      ageRecipient: made.ageRecipient,
      sshHostPublicKey: made.sshHostPublicKey,
      psynetAddress: '10.10.8.1',
      psynet: { role: 'lighthouse', underlay: ['192.168.77.1:4242', '[2001:db8::1]:4242'] },
      config: { version: 1 },
    });
    expect(JSON.parse(registry()).hosts.find((h: { name: string }) => h.name === 'lh-a')).toMatchObject({ role: 'lighthouse', groups: ['lighthouses'] });
    // The real nebula-cert reads the certificate on the volume: the lighthouse address and group.
    const { stdout } = await run('nebula-cert', ['print', '-json', '-path', join(work, 'lh-a', 'psynet.host.crt')], { timeout: 30_000 });
    expect(JSON.parse(stdout).details).toMatchObject({ name: 'lh-a', ips: ['10.10.8.1/22'], groups: ['lighthouses'] });

    // A rekey without --lighthouse keeps the role and the endpoints; with it, the endpoints are replaced.
    const kept = await createNode(options('lh-a', { kind: 'dir', path: join(work, 'lh-a2') }, { rekey: true }));
    expect(kept).toMatchObject({ role: 'lighthouse', psynetAddress: '10.10.8.1', underlay: ['192.168.77.1:4242', '[2001:db8::1]:4242'] });
    expect(definitionOf('lh-a').psynet).toEqual({ role: 'lighthouse', underlay: ['192.168.77.1:4242', '[2001:db8::1]:4242'] });
    await createNode(options('lh-a', { kind: 'dir', path: join(work, 'lh-a3') }, { rekey: true, lighthouse: { underlay: ['lh-a.example.org:443'] } }));
    expect(definitionOf('lh-a').psynet).toEqual({ role: 'lighthouse', underlay: ['lh-a.example.org:443'] });
    expect(await readNodeLighthouses(nodesDir)).toEqual([
      { name: 'lh-a', definitionFile: join(nodesDir, 'lh-a.json'), underlay: ['lh-a.example.org:443'], listenPort: 443 },
    ]);

    // A plain node stays a plain node: no psynet section, and --lighthouse on it is refused.
    expect(definitionOf('n1').psynet).toBeUndefined();
    const before = registry();
    await expect(
      createNode(options('n1', { kind: 'dir', path: join(work, 'n1-lh') }, { rekey: true, lighthouse: { underlay: ['192.168.77.2:4242'] } })),
    ).rejects.toMatchObject({
      code: 'HOST_CONFLICT',
      message: expect.stringMatching(/^n1 is in the psynet registry as a node \(10\.10\.10\.1\), not a lighthouse;/),
    });
    expect(registry()).toBe(before);
    expect(existsSync(join(work, 'n1-lh'))).toBe(false);
  });

  it('refuses a bad lighthouse endpoint in one line before anything is allocated', async () => {
    const before = registry();
    const cases: [string[], RegExp][] = [
      [[], /^a lighthouse needs at least one underlay endpoint HOST:PORT/],
      [['192.168.77.1'], /^lighthouse endpoint "192\.168\.77\.1" is not HOST:PORT \(no port\)$/],
      [['[2001:db8::1]'], /\(no port\)$/],
      [['192.168.77.1:0'], /\(the port must be 1-65535\)$/],
      [['192.168.77.1:65536'], /\(the port must be 1-65535\)$/],
      [['192.168.77.1:04242'], /\(the port must be 1-65535\)$/],
      [['192.168.77.1:'], /\(the port must be 1-65535\)$/],
      [['300.1.2.3:4242'], /\(300\.1\.2\.3 is not an IPv4 address\)$/],
      [['2001:db8::1:4242'], /\(an IPv6 address goes in brackets: \[2001:db8::1\]:4242\)$/],
      [['[2001:db8::zz]:4242'], /\(2001:db8::zz is not an IPv6 address\)$/],
      [['bad_host:4242'], /\("bad_host" is not a host name, an IPv4 address or a bracketed IPv6 address\)$/],
      [[':4242'], /\("" is not a host name/],
      [['-lead.example.org:4242'], /is not a host name/],
      [['192.168.77.1:4242', '192.168.77.1:4242'], /^lighthouse endpoint "192\.168\.77\.1:4242" is given twice$/],
      [['192.168.77.1:4242', '[2001:db8::1]:4243'], /^lighthouse endpoints "192\.168\.77\.1:4242" and "\[2001:db8::1\]:4243" have different ports/],
    ];
    for (const [underlay, message] of cases) {
      const result = createNode(options('lh-bad', { kind: 'dir', path: join(work, 'lh-bad') }, { lighthouse: { underlay } }));
      await expect(result, underlay.join(' ')).rejects.toMatchObject({ code: 'BAD_NODE_INPUT', message: expect.stringMatching(message) });
    }
    expect(registry()).toBe(before);
    expect(existsSync(join(work, 'lh-bad'))).toBe(false);
    expect(existsSync(join(nodesDir, 'lh-bad.json'))).toBe(false);
    // The same endpoints pass: a host name, an IPv4 and a bracketed IPv6 address, ports 1 and 65535.
    for (const underlay of [['lh-b.example.org:1'], ['10.0.0.1:65535', '[::1]:65535', 'localhost:65535']]) {
      const made = await createNode(options('lh-b', { kind: 'dir', path: join(work, `lh-b-${underlay.length}`) }, { lighthouse: { underlay }, rekey: true }));
      expect(made.underlay).toEqual(underlay);
    }
  });

  it('site build reads the lighthouses among the definitions, and refuses a malformed psynet section', async () => {
    const dir = tempDir('lighthouse-definitions');
    writeFileSync(join(dir, 'plain.json'), JSON.stringify({ config: { version: 1 } }));
    writeFileSync(join(dir, 'lh-2.json'), JSON.stringify({ psynet: { role: 'lighthouse', underlay: ['192.0.2.2:4242'] }, config: { version: 1 } }));
    writeFileSync(join(dir, 'lh-1.json'), JSON.stringify({ psynet: { role: 'lighthouse', underlay: [] }, config: { version: 1 } }));
    writeFileSync(join(dir, 'notes.txt'), 'not a definition');
    expect(await readNodeLighthouses(dir)).toEqual([
      { name: 'lh-1', definitionFile: join(dir, 'lh-1.json'), underlay: [] },
      { name: 'lh-2', definitionFile: join(dir, 'lh-2.json'), underlay: ['192.0.2.2:4242'], listenPort: 4242 },
    ]);
    expect(await readNodeLighthouses(join(dir, 'missing'))).toEqual([]);
    for (const [psynet, message] of [
      [{ role: 'node' }, /lh-3\.json: psynet must be \{"role": "lighthouse", "underlay"/],
      [{ role: 'lighthouse', underlay: '192.0.2.3:4242' }, /psynet must be/],
      [{ role: 'lighthouse', underlay: ['192.0.2.3'] }, /lh-3\.json: psynet\.underlay: lighthouse endpoint "192\.0\.2\.3" is not HOST:PORT \(no port\)$/],
    ] as const) {
      writeFileSync(join(dir, 'lh-3.json'), JSON.stringify({ psynet, config: { version: 1 } }));
      await expect(readNodeLighthouses(dir)).rejects.toMatchObject({ code: 'BAD_NODE_DEFINITION', message: expect.stringMatching(message) });
    }
    writeFileSync(join(dir, 'lh-3.json'), '{ "psynet": ');
    await expect(readNodeLighthouses(dir)).rejects.toMatchObject({
      code: 'BAD_NODE_DEFINITION',
      message: expect.stringMatching(/lh-3\.json is not valid JSON/),
    });
  });
});
