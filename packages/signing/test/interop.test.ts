import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import {
  decodeSecretKey,
  encodePublicKey,
  encodeSecretKey,
  generateKeyPair,
  readPublicKeyFile,
  readSecretKeyFile,
  readSignatureFile,
  signFile,
  verifyFile,
  type KdfLimits,
} from '../src/index.js';

// The real minisign (Debian's package) on both sides of every exchange.
const dir = mkdtempSync(join(tmpdir(), 'psyops-signing-interop-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PASSWORD = 'correct horse battery staple';
// A cheap scrypt cost that minisign still honours (it derives N, r, p from the stored limits).
const CHEAP: KdfLimits = { opslimit: 32768, memlimit: 16 * 1024 * 1024 };

function minisign(args: string[], input = '') {
  // Generous: minisign's scrypt takes 1 GiB and seconds, many times that on a loaded 2-core machine.
  return execa('minisign', args, { input, cwd: dir, timeout: 150_000, reject: false });
}

const message = join(dir, 'message.bin');
writeFileSync(message, Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 256)));

async function psyopsKeyFiles(name: string, password: string | null, kdfLimits?: KdfLimits) {
  const key = generateKeyPair();
  const pub = join(dir, `${name}.pub`);
  const sec = join(dir, `${name}.key`);
  writeFileSync(pub, encodePublicKey(key));
  writeFileSync(sec, await encodeSecretKey(key, { password, ...(kdfLimits ? { kdfLimits } : {}) }), { mode: 0o600 });
  return { pub, sec };
}

describe('interop with the real minisign', () => {
  it('minisign verifies prehashed and legacy signatures made with an unencrypted psyops key', async () => {
    const { pub, sec } = await psyopsKeyFiles('ps-plain', null);
    const key = await readSecretKeyFile(sec);
    for (const legacy of [false, true]) {
      const sig = join(dir, `ps-plain-${legacy}.minisig`);
      writeFileSync(sig, await signFile(message, key, { legacy, trustedComment: `legacy=${legacy}` }));
      const result = await minisign(['-V', '-p', pub, '-m', message, '-x', sig]);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stdout).toContain(`Trusted comment: legacy=${legacy}`);
    }
  });

  it('minisign signs with a password-encrypted psyops key (minisign scrypt cost) and psyops verifies', async () => {
    const { pub, sec } = await psyopsKeyFiles('ps-enc', PASSWORD);
    const sig = join(dir, 'ps-enc.minisig');
    const signed = await minisign(['-S', '-s', sec, '-m', message, '-x', sig, '-t', 'from minisign'], `${PASSWORD}\n`);
    expect(signed.exitCode, signed.stderr).toBe(0);
    const result = await verifyFile(message, await readPublicKeyFile(pub), await readSignatureFile(sig));
    expect(result.trustedComment).toBe('from minisign');
  });

  it('minisign refuses a wrong password for a psyops-encrypted key', async () => {
    const { sec } = await psyopsKeyFiles('ps-cheap', PASSWORD, CHEAP);
    const wrong = await minisign(['-S', '-s', sec, '-m', message, '-x', join(dir, 'never.minisig')], 'not the password\n');
    expect(wrong.exitCode).toBe(2);
    expect(wrong.stderr).toContain('Wrong password');
    const right = await minisign(['-S', '-s', sec, '-m', message, '-x', join(dir, 'cheap.minisig')], `${PASSWORD}\n`);
    expect(right.exitCode, right.stderr).toBe(0);
  });

  it('psyops signs with keys minisign made (encrypted and not), minisign verifies; and the reverse', async () => {
    const plain = await minisign(['-G', '-W', '-p', 'mm-plain.pub', '-s', 'mm-plain.key']);
    expect(plain.exitCode, plain.stderr).toBe(0);
    const enc = await minisign(['-G', '-p', 'mm-enc.pub', '-s', 'mm-enc.key'], `${PASSWORD}\n${PASSWORD}\n`);
    expect(enc.exitCode, enc.stderr).toBe(0);

    for (const [name, password] of [
      ['mm-plain', undefined],
      ['mm-enc', PASSWORD],
    ] as const) {
      const key = await readSecretKeyFile(join(dir, `${name}.key`), password);
      for (const legacy of [false, true]) {
        const sig = join(dir, `${name}-${legacy}.psyops.minisig`);
        writeFileSync(sig, await signFile(message, key, { legacy }));
        const checked = await minisign(['-V', '-p', `${name}.pub`, '-m', message, '-x', sig]);
        expect(checked.exitCode, checked.stderr).toBe(0);

        const theirs = join(dir, `${name}-${legacy}.minisign.minisig`);
        const made = await minisign(['-S', ...(legacy ? ['-l'] : []), '-s', `${name}.key`, '-m', message, '-x', theirs], password ? `${password}\n` : '');
        expect(made.exitCode, made.stderr).toBe(0);
        const result = await verifyFile(message, await readPublicKeyFile(join(dir, `${name}.pub`)), await readSignatureFile(theirs));
        expect(result.algorithm).toBe(legacy ? 'legacy' : 'prehashed');
        expect(result.trustedComment).toMatch(/^timestamp:\d+\tfile:message\.bin/);
      }
    }
  });

  it('reads the checksum minisign keeps after a password is removed (-C -W)', async () => {
    const enc = await minisign(['-G', '-p', 'cw.pub', '-s', 'cw.key'], `${PASSWORD}\n${PASSWORD}\n`);
    expect(enc.exitCode, enc.stderr).toBe(0);
    const removed = await minisign(['-C', '-W', '-s', 'cw.key'], `${PASSWORD}\n`);
    expect(removed.exitCode, removed.stderr).toBe(0);
    const key = await decodeSecretKey(readFileSync(join(dir, 'cw.key'), 'utf8'));
    expect(key.publicKey).toEqual((await readPublicKeyFile(join(dir, 'cw.pub'))).publicKey);
  });
});
