import { readRegularFile } from '@psyops/core';
import { decodePublicKey, decodeSecretKey, type PasswordInput, type PublicKey, type SecretKey } from './keys.js';
import { parseSignature, type Signature } from './signature.js';

// Key and signature files are a few hundred bytes (a trusted comment at most 8 KiB); refusing
// anything large keeps a wrong path (an ISO given as -p) from being read into memory.
const MAX_SMALL_FILE = 64 * 1024;

/** Reads and parses a minisign public key file. */
export async function readPublicKeyFile(path: string): Promise<PublicKey> {
  const text = await readRegularFile(path, 'public key file', MAX_SMALL_FILE);
  return decodePublicKey(text.toString('utf8'), `public key file ${path}`);
}

/** Reads, parses and (when encrypted) decrypts a minisign secret key file. */
export async function readSecretKeyFile(path: string, password?: PasswordInput): Promise<SecretKey> {
  const text = await readRegularFile(path, 'secret key file', MAX_SMALL_FILE);
  return decodeSecretKey(text.toString('utf8'), { source: `secret key file ${path}`, ...(password === undefined ? {} : { password }) });
}

/** Reads and parses a `.minisig` file. */
export async function readSignatureFile(path: string): Promise<Signature> {
  const text = await readRegularFile(path, 'signature file', MAX_SMALL_FILE);
  return parseSignature(text.toString('utf8'), `signature file ${path}`);
}
