/** abuild-style RSA keys: `<name>-<hex unix time>.rsa` (PKCS#8 PEM) and `.rsa.pub` (SPKI PEM). */
import { createPrivateKey, createPublicKey, generateKeyPair as generateKeyPairCallback, type KeyObject } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileAccessError } from '@psyops/core';
import { ApkKeyError } from './errors.js';

const generateKeyPair = promisify(generateKeyPairCallback);

export interface ApkKeyPair {
  /** File name of the public key, as it must appear in /etc/apk/keys and in `.SIGN.RSA.<keyName>`. */
  keyName: string;
  /** File name for the private key (`keyName` without `.pub`). */
  privateKeyName: string;
  privateKeyPem: string;
  publicKeyPem: string;
}

/** A signing key: the private key and the public key file name signatures refer to. */
export interface ApkSigningKey {
  keyName: string;
  privateKey: KeyObject | string;
}

/** Trusted public keys by file name (what apk reads from /etc/apk/keys). */
export type ApkKeyRing = ReadonlyMap<string, KeyObject>;

const KEY_NAME = /^[A-Za-z0-9@._+-]+$/;

/** Like abuild-keygen: RSA (4096 bits by default), named `<name>-<hex seconds>.rsa[.pub]`. */
export async function generateApkKey(options: { name: string; bits?: number; now?: number }): Promise<ApkKeyPair> {
  if (!KEY_NAME.test(options.name)) throw new ApkKeyError(`key name "${options.name}" may only contain letters, digits and @._+-`);
  const bits = options.bits ?? 4096;
  if (![2048, 3072, 4096, 8192].includes(bits)) throw new ApkKeyError(`RSA key size must be 2048, 3072, 4096 or 8192 bits, got ${bits}`);
  const seconds = Math.floor(options.now ?? Date.now() / 1000);
  const privateKeyName = `${options.name}-${seconds.toString(16)}.rsa`;
  const { privateKey, publicKey } = await generateKeyPair('rsa', {
    modulusLength: bits,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { keyName: `${privateKeyName}.pub`, privateKeyName, privateKeyPem: privateKey, publicKeyPem: publicKey };
}

/**
 * Reads a private key for signing. The signature names the public key file: `keyName`, or by
 * default the private key's file name + `.pub` (what abuild does).
 */
export async function readSigningKey(privateKeyPath: string, keyName?: string): Promise<ApkSigningKey> {
  let pem: string;
  try {
    pem = await readFile(privateKeyPath, 'utf8');
  } catch (error) {
    throw fileAccessError(error, privateKeyPath, 'APK signing key');
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch {
    throw new ApkKeyError(`${privateKeyPath} is not a PEM private key`);
  }
  if (privateKey.asymmetricKeyType !== 'rsa') throw new ApkKeyError(`${privateKeyPath} is not an RSA key (apk only verifies RSA)`);
  const name = keyName ?? `${privateKeyPath.split('/').pop()}.pub`;
  if (!KEY_NAME.test(name)) throw new ApkKeyError(`key name "${name}" may only contain letters, digits and @._+-`);
  return { keyName: name, privateKey };
}

/** Parses one PEM public key (SubjectPublicKeyInfo), or undefined when it is not one. */
function parsePublicKey(pem: string | Buffer): KeyObject | undefined {
  // apk reads keys with PEM_read_bio_PUBKEY: only SubjectPublicKeyInfo PEM, never a private key.
  if (!String(pem).includes('-----BEGIN PUBLIC KEY-----')) return undefined;
  try {
    const key = createPublicKey(pem);
    return key.asymmetricKeyType === 'rsa' ? key : undefined;
  } catch {
    return undefined;
  }
}

/** All RSA public keys in a directory by file name; other files are skipped, as apk does. */
export async function loadKeysDir(dir: string): Promise<ApkKeyRing> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    throw fileAccessError(error, dir, 'keys directory');
  }
  const keys = new Map<string, KeyObject>();
  for (const name of names.sort()) {
    // Only small regular files can be PEM keys; anything else is skipped unread.
    const info = await stat(join(dir, name)).catch(() => undefined);
    if (!info?.isFile() || info.size > 64 * 1024) continue;
    const key = await readFile(join(dir, name)).then(parsePublicKey, () => undefined);
    if (key) keys.set(name, key);
  }
  return keys;
}

/** A key ring from in-memory PEM public keys. */
export function keyRing(keys: Record<string, string | Buffer>): ApkKeyRing {
  const ring = new Map<string, KeyObject>();
  for (const [name, pem] of Object.entries(keys)) {
    const key = parsePublicKey(pem);
    if (!key) throw new ApkKeyError(`${name} is not a PEM RSA public key`);
    ring.set(name, key);
  }
  return ring;
}
