import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { blake2b256, createBlake2b512, prehashBackend } from '../src/blake2b.js';
import {
  decodePublicKey,
  decodeSecretKey,
  encodePublicKey,
  encodeSecretKey,
  formatKeyId,
  isEncryptedSecretKey,
  parseSignature,
  publicKeyOf,
  signBytes,
  signFile,
  verifyBytes,
  verifyFile,
} from '../src/index.js';
import { MINISIGN_KDF_LIMITS, scryptParameters } from '../src/keys.js';

const fixtures = join(import.meta.dirname, 'fixtures');
const text = (name: string) => readFileSync(join(fixtures, name), 'utf8');
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const decoded = JSON.parse(text('minisign-decoded.json'));
const hello = readFileSync(join(fixtures, 'hello.txt'));

describe('minisign 0.11 vectors', () => {
  it('reads public keys and shows key ids as minisign does', () => {
    const key = decodePublicKey(text('unenc.pub'));
    expect(hex(key.keyId)).toBe(decoded.unenc.keynum);
    expect(hex(key.publicKey)).toBe(decoded.unenc.ed25519_pk);
    expect(formatKeyId(key.keyId)).toBe(decoded.unenc.keyid_display);
    expect(encodePublicKey(key)).toBe(text('unenc.pub'));
    expect(encodePublicKey(decodePublicKey(text('enc.pub')))).toBe(text('enc.pub'));
  });

  it('drops leading zeros from key ids like minisign 0.11', () => {
    expect(formatKeyId(Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 0x0f))).toBe('F00000000000001');
  });

  it('reads an unencrypted key and writes it back byte for byte', async () => {
    const keyText = text('unenc.key');
    expect(isEncryptedSecretKey(keyText)).toBe(false);
    const key = await decodeSecretKey(keyText);
    expect(hex(key.secretKey.subarray(0, 32))).toBe(decoded.unenc.ed25519_seed);
    expect(hex(key.publicKey)).toBe(decoded.unenc.ed25519_pk);
    expect(await encodeSecretKey(key, { comment: 'psyops test key (unencrypted)' })).toBe(keyText);
  });

  it('decrypts an encrypted key with minisign scrypt parameters', async () => {
    expect(scryptParameters(MINISIGN_KDF_LIMITS)).toEqual({ N: 2 ** 20, r: 8, p: 1 });
    expect(isEncryptedSecretKey(text('enc.key'))).toBe(true);
    const key = await decodeSecretKey(text('enc.key'), { password: 'psyops-test' });
    expect(hex(key.keyId)).toBe(decoded.enc.keynum);
    expect(hex(key.secretKey.subarray(0, 32))).toBe(decoded.enc.ed25519_seed);
    expect(hex(await blake2b256(new Uint8Array([0x45, 0x64, ...key.keyId, ...key.secretKey])))).toBe(decoded.enc.chk_blake2b256_of_sigalg_keynum_sk);
  });

  it('computes the same BLAKE2b-512 prehash with libsodium and node:crypto', () => {
    expect(prehashBackend()).toBe('libsodium');
    for (const backend of ['libsodium', 'node:crypto'] as const) {
      const hash = createBlake2b512(backend);
      hash.update(hello.subarray(0, 5));
      hash.update(hello.subarray(5));
      expect(hex(hash.digest())).toBe(decoded['hello.txt'].blake2b512);
    }
  });

  it('reproduces the prehashed, legacy and encrypted-key signatures byte for byte', async () => {
    const unenc = await decodeSecretKey(text('unenc.key'));
    const enc = await decodeSecretKey(text('enc.key'), { password: 'psyops-test' });
    expect(signBytes(hello, unenc, { trustedComment: 'timestamp:1795628197\tfile:hello.txt\thashed' })).toBe(text('hello.txt.prehashed.minisig'));
    expect(await signFile(join(fixtures, 'hello.txt'), unenc, { timestamp: 1795628197 })).toBe(text('hello.txt.prehashed.minisig'));
    expect(signBytes(hello, unenc, { legacy: true, untrustedComment: 'legacy signature', trustedComment: 'psyops legacy test' })).toBe(
      text('hello.txt.legacy.minisig'),
    );
    expect(signBytes(hello, enc, { trustedComment: 'signed with the encrypted key' })).toBe(text('hello.txt.enc.minisig'));
  });

  it('verifies all three signatures and returns their trusted comments', async () => {
    const unenc = decodePublicKey(text('unenc.pub'));
    const enc = decodePublicKey(text('enc.pub'));
    const file = join(fixtures, 'hello.txt');
    const prehashed = await verifyFile(file, unenc, text('hello.txt.prehashed.minisig'));
    expect(prehashed).toMatchObject({ trustedComment: 'timestamp:1795628197\tfile:hello.txt\thashed', algorithm: 'prehashed' });
    expect(verifyBytes(hello, unenc, text('hello.txt.legacy.minisig'))).toMatchObject({ trustedComment: 'psyops legacy test', algorithm: 'legacy' });
    expect((await verifyFile(file, enc, text('hello.txt.enc.minisig'))).trustedComment).toBe('signed with the encrypted key');
  });

  it('parses every field of a signature file', () => {
    const sig = parseSignature(text('hello.txt.prehashed.minisig'));
    const expected = decoded['hello.txt.prehashed.minisig'];
    expect(hex(sig.keyId)).toBe(expected.keynum);
    expect(hex(sig.signature)).toBe(expected.signature);
    expect(hex(sig.globalSignature)).toBe(expected.global_signature);
    expect(sig.untrustedComment).toBe('signature from minisign secret key');
  });

  it('reads CRLF files like minisign 0.11', async () => {
    const crlf = (s: string) => s.replace(/\n/g, '\r\n');
    const key = decodePublicKey(crlf(text('unenc.pub')));
    expect(verifyBytes(hello, key, crlf(text('hello.txt.prehashed.minisig'))).trustedComment).toContain('hashed');
    expect(publicKeyOf(await decodeSecretKey(crlf(text('unenc.key'))))).toEqual(key);
  });
});
