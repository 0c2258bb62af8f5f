import { randomBytes } from 'node:crypto';
import { ed25519PublicKey, x25519PublicKey } from './curve25519.js';
import { CertificateFormatError } from './errors.js';
import { decodeSinglePem, encodePem, PEM } from './pem.js';

/** A host's X25519 key pair; the private key is 32 random bytes, stored unclamped as nebula does. */
export interface HostKeyPair {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

export function generateHostKeyPair(): HostKeyPair {
  const privateKey = new Uint8Array(randomBytes(32));
  return { privateKey, publicKey: x25519PublicKey(privateKey) };
}

/** The X25519 public key of a private key (clamping happens inside the multiplication). */
export function hostPublicKeyOf(privateKey: Uint8Array): Uint8Array {
  return x25519PublicKey(privateKey);
}

/** A CA's Ed25519 key: 64-byte secret key (seed || public key) and the 32-byte public key. */
export interface CaKeyPair {
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}

export function generateCaKeyPair(): CaKeyPair {
  const seed = new Uint8Array(randomBytes(32));
  const publicKey = ed25519PublicKey(seed);
  const secretKey = new Uint8Array(64);
  secretKey.set(seed);
  secretKey.set(publicKey, 32);
  return { secretKey, publicKey };
}

export const encodeHostPrivateKey = (key: Uint8Array): string => encodePem(PEM.hostPrivateKey, key);
export const encodeHostPublicKey = (key: Uint8Array): string => encodePem(PEM.hostPublicKey, key);
export const encodeCaPrivateKey = (key: Uint8Array): string => encodePem(PEM.caPrivateKey, key);

function sized(bytes: Uint8Array, length: number, what: string, source: string): Uint8Array {
  if (bytes.length !== length) throw new CertificateFormatError(`${source}: key was not ${length} bytes, is invalid ${what}`);
  return bytes;
}

export function parseHostPrivateKey(text: string, source = 'host key'): Uint8Array {
  return sized(decodeSinglePem(text, PEM.hostPrivateKey, source), 32, 'X25519 private key', source);
}

export function parseHostPublicKey(text: string, source = 'host public key'): Uint8Array {
  return sized(decodeSinglePem(text, PEM.hostPublicKey, source), 32, 'X25519 public key', source);
}

/** Reads `NEBULA ED25519 PRIVATE KEY` (64 bytes); the public half is checked against the seed. */
export function parseCaPrivateKey(text: string, source = 'CA key'): CaKeyPair {
  const secretKey = sized(decodeSinglePem(text, PEM.caPrivateKey, source), 64, 'ed25519 private key', source);
  const publicKey = ed25519PublicKey(secretKey.subarray(0, 32));
  if (!Buffer.from(publicKey).equals(secretKey.subarray(32))) {
    throw new CertificateFormatError(`${source}: the public half of the Ed25519 key does not match its seed`);
  }
  return { secretKey, publicKey };
}
