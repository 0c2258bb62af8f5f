import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { Encrypter, armor } from 'age-encryption';
import { ageRecipientOf, decryptAge } from '../src/age-decrypt.js';
import { AgeDecryptError } from '../src/errors.js';
import { tempDir } from './fixtures.js';

const run = promisify(execFile);
const KIB64 = 64 * 1024;

interface Key {
  identity: string;
  recipient: string;
}

/** A key pair made by the real age-keygen. */
async function ageKeygen(dir: string, name: string): Promise<Key> {
  const file = join(dir, name);
  await run('age-keygen', ['-o', file], { timeout: 30_000 });
  const identity = readFileSync(file, 'utf8')
    .split('\n')
    .find((line) => line.startsWith('AGE-SECRET-KEY-1'))!;
  const { stdout } = await run('age-keygen', ['-y', file], { timeout: 30_000 });
  return { identity, recipient: stdout.trim() };
}

/** Encrypts with the real age CLI; `armored` adds -a. */
async function ageEncrypt(dir: string, plaintext: Buffer, recipients: string[], armored: boolean): Promise<Buffer> {
  const input = join(dir, `plain-${randomBytes(4).toString('hex')}`);
  writeFileSync(input, plaintext);
  await run('age', [...(armored ? ['-a'] : []), ...recipients.flatMap((r) => ['-r', r]), '-o', `${input}.age`, input], { timeout: 30_000 });
  return readFileSync(`${input}.age`);
}

function decryptError(file: string | Uint8Array, identity: string): string {
  try {
    decryptAge(file, identity);
  } catch (error) {
    expect(error).toBeInstanceOf(AgeDecryptError);
    const message = (error as Error).message;
    expect(message).not.toContain('\n');
    return message;
  }
  throw new Error('decryptAge accepted it');
}

describe('age decryption on node:crypto', () => {
  let dir: string;
  let alice: Key;
  let bob: Key;
  let mallory: Key;
  beforeAll(async () => {
    dir = tempDir('age');
    [alice, bob, mallory] = await Promise.all([ageKeygen(dir, 'alice'), ageKeygen(dir, 'bob'), ageKeygen(dir, 'mallory')]);
  });

  it('derives the recipient age-keygen -y prints', () => {
    expect(ageRecipientOf(alice.identity)).toBe(alice.recipient);
    expect(ageRecipientOf(alice.identity.toLowerCase())).toBe(alice.recipient); // bech32 is case-insensitive as a whole
    expect(() => ageRecipientOf(alice.identity.slice(0, -1) + (alice.identity.endsWith('Q') ? 'P' : 'Q'))).toThrow(/not an age X25519 identity/);
    expect(() => ageRecipientOf(alice.recipient)).toThrow(/not an age X25519 identity/);
  });

  const sizes: [string, number][] = [
    ['empty', 0],
    ['one byte', 1],
    ['exactly 64 KiB', KIB64],
    ['64 KiB + 1', KIB64 + 1],
    ['three chunks and a bit', 3 * KIB64 + 100],
  ];
  for (const [what, size] of sizes) {
    it(`decrypts what the age CLI encrypted (${what}), binary and armored, for each of several recipients`, async () => {
      const plaintext = randomBytes(size);
      for (const armored of [false, true]) {
        const file = await ageEncrypt(dir, plaintext, [alice.recipient, bob.recipient], armored);
        expect(file.subarray(0, 10).toString()).toBe(armored ? '-----BEGIN' : 'age-encryp');
        expect(decryptAge(file, alice.identity).equals(plaintext)).toBe(true);
        expect(decryptAge(file, bob.identity).equals(plaintext)).toBe(true);
        if (armored) expect(decryptAge(file.toString('utf8'), alice.identity).equals(plaintext)).toBe(true);
        expect(decryptError(file, mallory.identity)).toMatch(/^wrong key: none of the 2 X25519 stanza\(s\) is for this identity$/);
      }
    });
  }

  it("decrypts what age-encryption's Encrypter made (as siteapi publishes secrets)", async () => {
    for (const plaintext of ['k3s-token-77ab21', '', 'é'.repeat(KIB64)]) {
      const encrypter = new Encrypter();
      encrypter.addRecipient(alice.recipient);
      const binary = await encrypter.encrypt(plaintext);
      expect(decryptAge(binary, alice.identity).toString('utf8')).toBe(plaintext);
      expect(decryptAge(armor.encode(binary), alice.identity).toString('utf8')).toBe(plaintext);
    }
  });

  it('refuses what is not an age file, or not for an X25519 identity', async () => {
    expect(decryptError('hello world', alice.identity)).toBe('not an age file');
    expect(decryptError(Buffer.alloc(0), alice.identity)).toBe('not an age file');
    expect(decryptError('age-encryption.org/v1\n-> X25519', alice.identity)).toBe('truncated age header');
    expect(decryptError('age-encryption.org/v2\n', alice.identity)).toMatch(/unsupported age version/);
    const file = await ageEncrypt(dir, Buffer.from('x'), [alice.recipient], false);
    expect(decryptError(file, 'AGE-SECRET-KEY-1NOTAKEY')).toMatch(/not an age X25519 identity/);

    // An SSH recipient: a valid age file with no X25519 stanza.
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'ssh_key')], { timeout: 30_000 });
    const sshFile = await ageEncrypt(dir, Buffer.from('x'), [readFileSync(join(dir, 'ssh_key.pub'), 'utf8').trim()], false);
    expect(decryptError(sshFile, alice.identity)).toMatch(/^no X25519 stanza for this identity \(recipient types: ssh-ed25519\)$/);

    const encrypter = new Encrypter();
    encrypter.setPassphrase('correct horse');
    encrypter.setScryptWorkFactor(10);
    expect(decryptError(await encrypter.encrypt('x'), alice.identity)).toBe('passphrase-encrypted (scrypt) age files are not supported on a node');
  });

  it('refuses a tampered header, a tampered or truncated payload, a truncated armor', async () => {
    const plaintext = randomBytes(KIB64 + 1);
    const file = await ageEncrypt(dir, plaintext, [alice.recipient, bob.recipient], false);
    const headerEnd = file.indexOf('\n---') + 1;

    // Bob's stanza changed: Alice still unwraps the file key, but the header MAC no longer matches.
    const text = file.toString('latin1');
    const bobBody = text.split('\n')[4]!;
    const flipped = bobBody[0] === 'A' ? `B${bobBody.slice(1)}` : `A${bobBody.slice(1)}`;
    expect(decryptError(Buffer.from(text.replace(bobBody, flipped), 'latin1'), alice.identity)).toBe('age header MAC mismatch (the header was tampered with)');
    // An extra stanza of an unknown type is ignored by the identity, and caught by the MAC.
    const grease = Buffer.concat([file.subarray(0, headerEnd), Buffer.from('-> grease x\n\n'), file.subarray(headerEnd)]);
    expect(decryptError(grease, alice.identity)).toBe('age header MAC mismatch (the header was tampered with)');

    const payloadStart = file.indexOf('\n', headerEnd) + 1;
    const tampered = Buffer.from(file);
    tampered[payloadStart + 116] = tampered[payloadStart + 116]! ^ 1;
    expect(decryptError(tampered, alice.identity)).toBe('age payload tampered with or truncated (chunk 0 does not authenticate)');
    const lastChunkTampered = Buffer.from(file);
    lastChunkTampered[file.length - 1] = lastChunkTampered[file.length - 1]! ^ 1;
    expect(decryptError(lastChunkTampered, alice.identity)).toBe('age payload tampered with or truncated (chunk 1 does not authenticate)');
    // Cut at the chunk boundary: the first chunk is not a last chunk.
    expect(decryptError(file.subarray(0, payloadStart + 16 + KIB64 + 16), alice.identity)).toBe(
      'age payload tampered with or truncated (chunk 0 does not authenticate)',
    );
    expect(decryptError(file.subarray(0, file.length - 1), alice.identity)).toMatch(/^age payload tampered with or truncated/);
    expect(decryptError(file.subarray(0, payloadStart + 10), alice.identity)).toBe('age payload truncated');
    expect(decryptError(file.subarray(0, headerEnd + 2), alice.identity)).toBe('truncated age header');
    expect(decryptAge(file, alice.identity).equals(plaintext)).toBe(true); // the original was fine

    const armored = (await ageEncrypt(dir, plaintext, [alice.recipient], true)).toString('utf8');
    expect(decryptError(armored.slice(0, armored.indexOf('-----END')), alice.identity)).toMatch(/without its -----END AGE ENCRYPTED FILE----- line/);
    const lines = armored.split('\n');
    lines[3] = lines[3]!.slice(1); // a short line inside the armor
    expect(decryptError(lines.join('\n'), alice.identity)).toBe('armored age file with malformed lines');
    expect(decryptAge(`\n  ${armored}\n\n`, alice.identity).equals(plaintext)).toBe(true); // whitespace around the armor is fine
    expect(decryptAge(armored.replaceAll('\n', '\r\n'), alice.identity).equals(plaintext)).toBe(true); // and CRLF
  });
});
