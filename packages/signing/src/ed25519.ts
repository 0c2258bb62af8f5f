import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';

// Ed25519 through node:crypto (OpenSSL): the same deterministic bytes as libsodium and tweetnacl,
// native and built in. It matters for a CLI that runs once per file: tweetnacl's first, not yet
// optimised calls cost tens of milliseconds. Keys are raw bytes as in minisign files, wrapped in
// the fixed DER headers of PKCS#8 (private) and SPKI (public) Ed25519 keys.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

function privateKey(secretKey: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, secretKey.subarray(0, 32)]), format: 'der', type: 'pkcs8' });
}

function publicKey(key: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, key]), format: 'der', type: 'spki' });
}

/** Signs with a minisign/libsodium secret key (seed || public key; only the seed is used). */
export function ed25519Sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array {
  return new Uint8Array(sign(null, message, privateKey(secretKey)));
}

/** Checks an Ed25519 signature; false for any mismatch, including malformed points. */
export function ed25519Verify(message: Uint8Array, signature: Uint8Array, key: Uint8Array): boolean {
  try {
    return verify(null, message, publicKey(key), signature);
  } catch {
    return false;
  }
}

/** The public key of a 32-byte seed. */
export function ed25519PublicKeyFromSeed(seed: Uint8Array): Uint8Array {
  const der = createPublicKey(privateKey(seed)).export({ format: 'der', type: 'spki' });
  return new Uint8Array(der.subarray(SPKI_PREFIX.length));
}

/** A new random key pair as minisign stores it: secretKey = seed(32) || publicKey(32). */
export function ed25519GenerateKeyPair(): { publicKey: Uint8Array; secretKey: Uint8Array } {
  const { privateKey: generated } = generateKeyPairSync('ed25519');
  const seed = generated.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX.length);
  const publicKey = ed25519PublicKeyFromSeed(seed);
  const secretKey = new Uint8Array(64);
  secretKey.set(seed, 0);
  secretKey.set(publicKey, 32);
  return { publicKey, secretKey };
}
