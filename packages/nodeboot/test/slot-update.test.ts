import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatGrubEnv } from '@psyops/core';
import { encodePublicKey, generateKeyPair, signBytes } from '@psyops/signing';
import { buildSite } from '@psyops/siteapi';
import { generateNodeSecrets, writeSecretDir } from '../src/node-secrets.js';
import { updateCommandWith } from '../src/slot-update/update.js';
import { TempRootSystem } from '../src/temp-root-system.js';
import { MAC, NODE, psynetFixture, tempDir } from './fixtures.js';
import { serveDir } from './ops-helpers.js';
// Update tars as siteapi's tests make them (ustar, slot.json first).
import { slotTar } from '../../siteapi/test/update-tar.ts';
import { dirMounter } from './dir-mounter.js';

const key = generateKeyPair();

async function site(releases: string[]): Promise<{ url: string; requests: string[]; siteDir: string }> {
  const images = tempDir('images');
  for (const release of releases) writeFileSync(join(images, `psyopsOS-${release}-x86_64.tar`), slotTar({ release }));
  const siteDir = join(tempDir('site'), 'site');
  await buildSite({ outDir: siteDir, signingKey: key, imagesDir: images, timestamp: 1_790_000_000 });
  return { ...(await serveDir(siteDir)), siteDir };
}

async function node(siteUrl: string, running = 'r2') {
  const root = tempDir('root');
  mkdirSync(join(root, 'proc'));
  writeFileSync(join(root, 'proc/cmdline'), 'console=ttyS0 psyopsos.slot=psyopsOS-A panic=10\n');
  mkdirSync(join(root, 'media/boot'), { recursive: true });
  writeFileSync(join(root, 'media/boot/.psyopsOS-release'), `${running} x86_64\n`);
  mkdirSync(join(root, 'etc/psyopsOS'), { recursive: true });
  writeFileSync(join(root, 'etc/psyopsOS/site.url'), `${siteUrl}\n`);
  mkdirSync(join(root, 'mnt/psyops-secret'), { recursive: true });
  const secrets = await generateNodeSecrets({ name: NODE, mac: MAC, minisignPublicKey: encodePublicKey(key), psynet: psynetFixture(NODE) });
  await writeSecretDir(join(root, 'mnt/psyops-secret/mount'), secrets.files);
  const slotA = tempDir('slotA');
  writeFileSync(join(slotA, 'marker'), 'booted');
  const slotB = tempDir('slotB');
  writeFileSync(join(slotB, 'old-file'), 'old');
  const esp = tempDir('esp');
  mkdirSync(join(esp, 'boot/grub'), { recursive: true });
  writeFileSync(join(esp, 'boot/grub/grubenv'), formatGrubEnv({ psyops_good: 'A' }));
  const log: string[] = [];
  const mounter = dirMounter({ 'psyopsOS-A': slotA, 'psyopsOS-B': slotB, 'PSYOPS-ESP': esp }, log);
  const system = new TempRootSystem({ root });
  const out: string[] = [];
  const err: string[] = [];
  const run = (...args: string[]) => updateCommandWith(args, { system, mounter, out: (t) => out.push(t), err: (t) => err.push(t) });
  const grubenv = () => execFileSync('grub-editenv', [join(esp, 'boot/grub/grubenv'), 'list'], { encoding: 'utf8' });
  return { root, slotA, slotB, esp, log, system, out, err, run, grubenv };
}

describe('psyops-node update against a real site on 127.0.0.1', () => {
  it('writes the other slot and sets psyops_try=B; --reboot reboots', async () => {
    const s = await site(['r2', 'r3']);
    const n = await node(s.url);
    expect(await n.run('--json', '--reboot')).toBe(0);
    const report = JSON.parse(n.out[0]!);
    expect(report).toMatchObject({ action: 'updated', from: 'r2', to: 'r3', slot: 'B' });
    expect(report.bytes).toBe(slotTar({ release: 'r3' }).length);
    expect(readdirSync(n.slotB).sort()).toEqual(['.psyopsOS-release', 'boot', 'psyopsOS-slot.json', 'psyopsOS-slot.json.minisig']);
    expect(readFileSync(join(n.slotB, 'boot/vmlinuz-virt'), 'utf8')).toBe('kernel of r3');
    expect(readdirSync(n.slotA)).toEqual(['marker']);
    expect(n.grubenv()).toBe('psyops_good=A\npsyops_try=B\n');
    expect(readFileSync(join(n.esp, 'boot/grub/grubenv')).length).toBe(1024);
    expect(n.system.effects.map((e) => e.detail)).toContain('reboot');
  });

  it('--check writes nothing', async () => {
    const s = await site(['r3']);
    const n = await node(s.url);
    expect(await n.run('--check', '--json')).toBe(0);
    expect(JSON.parse(n.out[0]!)).toMatchObject({ action: 'available', to: 'r3', slot: 'B' });
    expect(n.log).toEqual([]);
    expect(readdirSync(n.slotB)).toEqual(['old-file']);
    expect(s.requests).not.toContain('/os/psyopsOS-r3-x86_64.tar');
  });

  it('refuses the same version, refuses an older one unless --allow-downgrade', async () => {
    const s = await site(['r1', 'r2']);
    const n = await node(s.url);
    expect(await n.run()).toBe(1);
    expect(n.err.at(-1)).toBe('psyops-node: already running r2 (ALREADY_RUNNING)\n');
    expect(await n.run('--version', 'r1')).toBe(1);
    expect(n.err.at(-1)).toMatch(/\(DOWNGRADE_REFUSED\)\n$/);
    expect(s.requests).not.toContain('/os/psyopsOS-r1-x86_64.tar');
    expect(await n.run('--version', 'r1', '--allow-downgrade')).toBe(0);
    expect(readFileSync(join(n.slotB, '.psyopsOS-release'), 'utf8')).toBe('r1 x86_64\n');
    expect(n.grubenv()).toContain('psyops_try=B');
  });

  it('refuses a tampered tar with the slot and grubenv untouched', async () => {
    const s = await site(['r3']);
    const tarPath = join(s.siteDir, 'os/psyopsOS-r3-x86_64.tar');
    const tar = readFileSync(tarPath);
    tar[3000] = tar[3000]! ^ 1;
    writeFileSync(tarPath, tar);
    const n = await node(s.url);
    const before = readFileSync(join(n.esp, 'boot/grub/grubenv'));
    expect(await n.run('--version', 'r3')).toBe(1);
    expect(n.err.at(-1)).toMatch(/\(BAD_SIGNATURE\)\n$/);
    expect(readdirSync(n.slotB)).toEqual(['old-file']);
    expect(readFileSync(join(n.esp, 'boot/grub/grubenv'))).toEqual(before);
    expect(n.log).toEqual([]);
  });

  it('refuses a wrong arch in the trusted comment before fetching the tar', async () => {
    const s = await site(['r3']);
    const path = 'os/psyopsOS-r3-x86_64.tar';
    const comment = 'type=psyopsOS version=r3 filename=psyopsOS-r3-x86_64.tar kernel=6.12.1-0-virt alpine=3.22.2 arch=aarch64';
    writeFileSync(join(s.siteDir, `${path}.minisig`), signBytes(readFileSync(join(s.siteDir, path)), key, { trustedComment: comment }));
    const n = await node(s.url);
    expect(await n.run('--version', 'r3')).toBe(1);
    expect(n.err.at(-1)).toMatch(/arch=aarch64, expected x86_64 \(BAD_TRUSTED_COMMENT\)\n$/);
    expect(s.requests).toContain(`/${path}.minisig`);
    expect(s.requests).not.toContain(`/${path}`);
  });

  it('refuses an ISO boot and a usage error', async () => {
    const s = await site(['r3']);
    const n = await node(s.url);
    writeFileSync(join(n.root, 'proc/cmdline'), 'console=ttyS0\n');
    expect(await n.run()).toBe(1);
    expect(n.err.at(-1)).toBe('psyops-node: booted from an ISO: use psyopsOS-write-bootmedia (NOT_A_DISK_BOOT)\n');
    expect(await n.run('--bogus')).toBe(2);
  });
});
