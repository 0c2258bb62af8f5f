import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { allocateHost, initCa, psynetFiles, releaseHost, resolvePlan, updateRegistry } from '@psyops/psynet';
import { encodePublicKey, generateKeyPair } from '@psyops/signing';
import { createNode, sshKeyFingerprint, type CreateNodeOptions } from '../src/node-create.js';
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
});
