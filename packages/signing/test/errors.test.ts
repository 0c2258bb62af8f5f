import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileAccessError } from '@psyops/core';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CommentError,
  KeyFormatError,
  KeyIdMismatchError,
  PasswordRequiredError,
  SignatureError,
  SignatureFormatError,
  TrustedCommentError,
  UnsupportedAlgorithmError,
  WrongPasswordError,
  decodePublicKey,
  decodePublicKeyBase64,
  decodeSecretKey,
  encodeSecretKey,
  generateKeyPair,
  parseSignature,
  publicKeyOf,
  readPublicKeyFile,
  readSecretKeyFile,
  signBytes,
  signFile,
  verifyBytes,
  verifyFile,
} from '../src/index.js';

const fixtures = join(import.meta.dirname, 'fixtures');
const text = (name: string) => readFileSync(join(fixtures, name), 'utf8');
const hello = readFileSync(join(fixtures, 'hello.txt'));
const unencPub = decodePublicKey(text('unenc.pub'));
const sigText = text('hello.txt.prehashed.minisig');
const dir = mkdtempSync(join(tmpdir(), 'psyops-signing-errors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function lines(sig: string): string[] {
  return sig.split('\n');
}

describe('verification failures are distinct typed errors', () => {
  it('a tampered file is a bad signature', () => {
    const tampered = Buffer.from(hello);
    tampered[0]! ^= 1;
    expect(() => verifyBytes(tampered, unencPub, sigText)).toThrow(SignatureError);
    expect(() => verifyBytes(Buffer.concat([hello, Buffer.from('x')]), unencPub, text('hello.txt.legacy.minisig'))).toThrow(SignatureError);
  });

  it('a tampered trusted comment fails the global signature', () => {
    const l = lines(sigText);
    l[2] = l[2]!.replace('hello.txt', 'hello.exe');
    expect(() => verifyBytes(hello, unencPub, l.join('\n'))).toThrow(TrustedCommentError);
  });

  it('a signature from another key is a key id mismatch, naming both ids', () => {
    const other = generateKeyPair();
    try {
      verifyBytes(hello, publicKeyOf(other), sigText);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(KeyIdMismatchError);
      expect((error as KeyIdMismatchError).signatureKeyId).toBe('4306EA2160D4438C');
    }
  });

  it('the right key id with another key pair is a bad signature', () => {
    const other = generateKeyPair();
    expect(() => verifyBytes(hello, { keyId: unencPub.keyId, publicKey: other.publicKey }, sigText)).toThrow(SignatureError);
  });

  it('truncated and garbage signature files are malformed', () => {
    for (const cut of [0, 20, 60, sigText.indexOf('trusted'), sigText.lastIndexOf('\n', sigText.length - 2) + 10]) {
      expect(() => parseSignature(sigText.slice(0, cut)), `cut at ${cut}`).toThrow(SignatureFormatError);
    }
    expect(() => parseSignature('\u0000\u0001 garbage \n\n\n')).toThrow(SignatureFormatError);
    expect(() => parseSignature(readFileSync(join(fixtures, 'unenc.pub'), 'utf8'))).toThrow(SignatureFormatError);
  });

  it('base64 of the wrong length, or with bad characters, is malformed', () => {
    const l = lines(sigText);
    for (const line of [l[1]!.slice(0, -4), `${l[1]}AAAA`, l[1]!.replace('R', ' '), l[1]!.replace('=', '')]) {
      expect(() => parseSignature([l[0], line, l[2], l[3]].join('\n'))).toThrow(SignatureFormatError);
    }
    expect(() => parseSignature([l[0], l[1], l[2], l[3]!.slice(4)].join('\n'))).toThrow(SignatureFormatError);
    expect(() => decodePublicKeyBase64('RWSMQ9RgIeoGQ8BLRrn0ryve26ssXo5m1nra58gD0MMIrK2Q17Pmra4')).toThrow(KeyFormatError);
  });

  it('an unknown algorithm is unsupported', () => {
    const l = lines(sigText);
    const raw = Buffer.from(l[1]!, 'base64');
    raw.write('XX', 0, 'latin1');
    expect(() => parseSignature([l[0], raw.toString('base64'), l[2], l[3]].join('\n'))).toThrow(UnsupportedAlgorithmError);
    const pubRaw = Buffer.from(lines(text('unenc.pub'))[1]!, 'base64');
    pubRaw.write('XX', 0, 'latin1');
    expect(() => decodePublicKeyBase64(pubRaw.toString('base64'))).toThrow(UnsupportedAlgorithmError);
  });

  it('legacy signatures are refused when prehashed ones are required', () => {
    expect(() => verifyBytes(hello, unencPub, text('hello.txt.legacy.minisig'), { requirePrehashed: true })).toThrow(UnsupportedAlgorithmError);
  });
});

describe('key files', () => {
  it('a secret key given as a public key is refused, and says what it is', () => {
    expect(() => decodePublicKey(text('unenc.key'))).toThrow(/found a secret key/);
    expect(() => decodePublicKey(text('unenc.key'))).toThrow(KeyFormatError);
  });

  it('a public key or signature given as a secret key is refused', async () => {
    await expect(decodeSecretKey(text('unenc.pub'))).rejects.toThrow(/found a public key/);
    await expect(decodeSecretKey(sigText)).rejects.toThrow(KeyFormatError);
  });

  it('a wrong password is WRONG_PASSWORD, a missing one PASSWORD_REQUIRED', async () => {
    const key = generateKeyPair();
    const encrypted = await encodeSecretKey(key, { password: 'right', kdfLimits: { opslimit: 32768, memlimit: 16 << 20 } });
    await expect(decodeSecretKey(encrypted, { password: 'wrong' })).rejects.toThrow(WrongPasswordError);
    await expect(decodeSecretKey(encrypted)).rejects.toThrow(PasswordRequiredError);
    const asked: string[] = [];
    const decoded = await decodeSecretKey(encrypted, { password: () => (asked.push('asked'), 'right') });
    expect(decoded.secretKey).toEqual(key.secretKey);
    expect(asked).toEqual(['asked']);
  });

  it('the password callback is not called for unencrypted keys', async () => {
    await decodeSecretKey(text('unenc.key'), { password: () => expect.unreachable('asked for a password') });
  });

  it('a damaged unencrypted key is refused rather than making bad signatures', async () => {
    const l = lines(text('unenc.key'));
    const raw = Buffer.from(l[1]!, 'base64');
    raw[70]! ^= 0xff; // inside the seed
    await expect(decodeSecretKey([l[0], raw.toString('base64'), ''].join('\n'))).rejects.toThrow(/damaged/);
  });

  it('a key asking for absurd scrypt memory is refused before deriving', async () => {
    const encrypted = await encodeSecretKey(generateKeyPair(), { password: 'x', kdfLimits: { opslimit: 32768, memlimit: 16 << 20 } });
    const l = lines(encrypted);
    const raw = Buffer.from(l[1]!, 'base64');
    raw.writeBigUInt64LE(2n ** 40n, 38);
    raw.writeBigUInt64LE(2n ** 40n, 46);
    await expect(decodeSecretKey([l[0], raw.toString('base64'), ''].join('\n'), { password: 'x' })).rejects.toThrow(KeyFormatError);
  });
});

describe('files', () => {
  it('missing files, directories and unopenable files are FileAccessErrors with distinct codes', async () => {
    const missing = join(dir, 'nope');
    await expect(readPublicKeyFile(missing)).rejects.toMatchObject({ code: 'FILE_NOT_FOUND', path: missing });
    await expect(readSecretKeyFile(dir)).rejects.toMatchObject({ code: 'NOT_A_FILE' });
    await expect(verifyFile(dir, unencPub, sigText)).rejects.toMatchObject({ code: 'NOT_A_FILE' });
    await expect(signFile(missing, generateKeyPair())).rejects.toBeInstanceOf(FileAccessError);
    // A socket cannot be opened for reading, even by root: the honest "unreadable" case here.
    const socket = join(dir, 'sock');
    const server = createServer().listen(socket);
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      await expect(readPublicKeyFile(socket)).rejects.toMatchObject({ code: 'FILE_UNREADABLE' });
    } finally {
      server.close();
    }
  });

  it('refuses legacy signing of files too big to hold in memory', async () => {
    const big = join(dir, 'sparse-big');
    writeFileSync(big, '');
    const { truncateSync } = await import('node:fs');
    truncateSync(big, 1024 ** 3 + 1);
    await expect(signFile(big, generateKeyPair(), { legacy: true })).rejects.toMatchObject({ code: 'FILE_TOO_LARGE' });
  });

  it('refuses a file path whose parent is a file', async () => {
    mkdirSync(join(dir, 'sub'), { recursive: true });
    writeFileSync(join(dir, 'sub', 'plain'), 'x');
    await expect(readPublicKeyFile(join(dir, 'sub', 'plain', 'key.pub'))).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
  });
});

describe('comments', () => {
  it('comments with line breaks or over minisign limits are refused', () => {
    const key = generateKeyPair();
    expect(() => signBytes(hello, key, { trustedComment: 'a\nb' })).toThrow(CommentError);
    expect(() => signBytes(hello, key, { untrustedComment: 'a\rb' })).toThrow(CommentError);
    expect(() => signBytes(hello, key, { trustedComment: 'x'.repeat(8174) })).toThrow(CommentError);
    expect(() => signBytes(hello, key, { untrustedComment: 'x'.repeat(1004) })).toThrow(CommentError);
    expect(signBytes(hello, key, { trustedComment: 'x'.repeat(8173) })).toContain('x'.repeat(8173));
  });
});
