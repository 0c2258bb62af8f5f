import { execFile } from 'node:child_process';
import { copyFileSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { Encrypter, armor } from 'age-encryption';
import { encodePublicKey, generateKeyPair } from '@psyops/signing';
import { generateNodeSecrets, writeSecretDir, type NodeSecretsInput } from '../src/node-secrets.js';
import { readSecretVolume } from '../src/secret-volume.js';
import { sshPublicKeyOf } from '../src/ssh.js';
import { MAC, NODE, psynetFixture, tempDir } from './fixtures.js';

const run = promisify(execFile);
const BUNDLE = join(import.meta.dirname, '..', 'dist', 'nodeboot.mjs');

const input = (extra: Partial<NodeSecretsInput> = {}): NodeSecretsInput => ({
  name: NODE,
  mac: MAC.toUpperCase(),
  minisignPublicKey: encodePublicKey(generateKeyPair()),
  psynet: psynetFixture(NODE),
  ...extra,
});

describe('secret volume files', () => {
  it('holds keys the real ssh-keygen and age accept, with private files 0600', async () => {
    const dir = join(tempDir('secret'), 'volume');
    const secrets = await generateNodeSecrets(input({ siteUrl: 'https://site.example.org/', testonlyToor: true }));
    await writeSecretDir(dir, secrets.files);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const modes = Object.fromEntries(readdirSync(dir).map((name) => [name, (statSync(join(dir, name)).mode & 0o777).toString(8)]));
    expect(modes).toEqual({
      'TESTONLYNOPROD.env': '600',
      'age.key': '600',
      mactab: '644',
      'minisign.pubkey': '644',
      'network.interfaces': '644',
      nodename: '600',
      'psynet.ca.crt': '644',
      'psynet.host.crt': '644',
      'psynet.host.key': '600',
      'site.url': '644',
      ssh_host_ed25519_key: '600',
    });
    expect(readFileSync(join(dir, 'mactab'), 'utf8')).toBe(`psy0 ${MAC}\n`);
    expect(readFileSync(join(dir, 'site.url'), 'utf8')).toBe('https://site.example.org\n');

    const { stdout } = await run('ssh-keygen', ['-y', '-f', join(dir, 'ssh_host_ed25519_key')], { timeout: 30_000 });
    expect(stdout.trim()).toBe(secrets.sshHostPublicKey);
    expect(sshPublicKeyOf(readFileSync(join(dir, 'ssh_host_ed25519_key'), 'utf8'))).toBe(secrets.sshHostPublicKey);

    const encrypter = new Encrypter();
    encrypter.addRecipient(secrets.ageRecipient);
    const ciphertext = join(dir, '..', 'message.age');
    writeFileSync(ciphertext, armor.encode(await encrypter.encrypt('for the node only')));
    const decrypted = await run('age', ['-d', '-i', join(dir, 'age.key'), ciphertext], { timeout: 30_000 });
    expect(decrypted.stdout).toBe('for the node only');

    const volume = await readSecretVolume(dir);
    expect(volume).toMatchObject({
      nodename: NODE,
      siteUrl: 'https://site.example.org',
      testonlyToor: true,
      mactab: [{ name: 'psy0', mac: MAC }],
      unknownFiles: [],
    });
  });

  it('refuses to replace an existing folder without force, and leaves it alone', async () => {
    const dir = join(tempDir('secret'), 'volume');
    const first = await generateNodeSecrets(input());
    await writeSecretDir(dir, first.files);
    const second = await generateNodeSecrets(input());
    await expect(writeSecretDir(dir, second.files)).rejects.toMatchObject({ code: 'FILE_EXISTS' });
    expect(readFileSync(join(dir, 'age.key'), 'utf8')).toBe(first.files.find((f) => f.name === 'age.key')!.data);
    await writeSecretDir(dir, second.files, { force: true });
    expect(readFileSync(join(dir, 'age.key'), 'utf8')).toBe(second.files.find((f) => f.name === 'age.key')!.data);
    expect(readdirSync(join(dir, '..'))).toEqual(['volume']);
  });

  it('names the broken file of a bad volume', async () => {
    const dir = join(tempDir('secret'), 'volume');
    await writeSecretDir(dir, (await generateNodeSecrets(input())).files);
    writeFileSync(join(dir, 'mactab'), 'psy0 not-a-mac\n');
    await expect(readSecretVolume(dir)).rejects.toThrow('mactab: "psy0 not-a-mac" is not "<interface> <mac>"');
    writeFileSync(join(dir, 'mactab'), `psy0 ${MAC}\n`);
    writeFileSync(join(dir, 'ssh_host_ed25519_key'), 'garbage');
    await expect(readSecretVolume(dir)).rejects.toMatchObject({ code: 'BAD_SECRET_VOLUME' });
  });
});

describe('the bundle dist/nodeboot.mjs', () => {
  it('runs with plain node from an empty folder (no node_modules) and validates a real volume', async () => {
    const empty = tempDir('bundle');
    copyFileSync(BUNDLE, join(empty, 'nodeboot.mjs'));
    const volume = join(tempDir('secret'), 'volume');
    await writeSecretDir(volume, (await generateNodeSecrets(input({ testonlyToor: true }))).files);
    const { stdout } = await run(process.execPath, ['nodeboot.mjs', 'check-secret', volume], { cwd: empty, timeout: 30_000, env: { PATH: process.env.PATH } });
    expect(stdout).toBe(
      `${NODE}: valid secret volume (TESTONLYNOPROD.env age.key mactab minisign.pubkey network.interfaces nodename psynet.ca.crt psynet.host.crt psynet.host.key ssh_host_ed25519_key; TESTONLY toor user)\n`,
    );
    const usage = await run(process.execPath, ['nodeboot.mjs'], { cwd: empty, timeout: 30_000 }).catch((error: { code: number; stderr: string }) => error);
    expect(usage).toMatchObject({
      code: 64,
      stderr: expect.stringMatching(/^usage: nodeboot\.mjs postboot \[--print-status\] \| status \| check-secret DIR \| apply .* \| update .*\n$/),
    });
    expect(readdirSync(empty)).toEqual(['nodeboot.mjs']);
  });
});
