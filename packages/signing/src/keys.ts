import { randomBytes, scrypt as scryptCallback, timingSafeEqual } from 'node:crypto';
import { blake2b256 } from './blake2b.js';
import { ed25519GenerateKeyPair, ed25519PublicKeyFromSeed } from './ed25519.js';
import {
  ALG_ED,
  CHK_BLAKE2B,
  KDF_NONE,
  KDF_SCRYPT,
  KEY_ID_BYTES,
  bytesEqual,
  concatBytes,
  decodeBase64Exact,
  encodeBase64,
  formatKeyId,
  splitLines,
  untrustedCommentLine,
} from './encoding.js';
import { KeyFormatError, PasswordRequiredError, UnsupportedAlgorithmError, WrongPasswordError } from './errors.js';

/** A minisign public key: the key id and the Ed25519 public key. */
export interface PublicKey {
  /** 8 random bytes chosen at generation; every signature carries them. */
  keyId: Uint8Array;
  /** Ed25519 public key, 32 bytes. */
  publicKey: Uint8Array;
}

/** A decrypted minisign secret key. */
export interface SecretKey extends PublicKey {
  /** Ed25519 secret key, 64 bytes: seed(32) followed by the public key(32). */
  secretKey: Uint8Array;
}

/** A password, or a function asked for it only when the key turns out to be encrypted. */
export type PasswordInput = string | Uint8Array | (() => string | Uint8Array | Promise<string | Uint8Array>);

/** scrypt cost as stored in the key file (libsodium's opslimit and memlimit). */
export interface KdfLimits {
  opslimit: number;
  memlimit: number;
}

/** What minisign stores for every key it encrypts: scrypt with N=2^20, r=8, p=1 (1 GiB). */
export const MINISIGN_KDF_LIMITS: KdfLimits = { opslimit: 33554432, memlimit: 1073741824 };

const PUBLIC_KEY_BYTES = 42;
const SECRET_KEY_BYTES = 158;
const SIGNATURE_BYTES = 74;
const ENCRYPTED_REGION = 54; // keynum(8) + sk(64) + chk(32) are covered by the key stream
// minisign asks for 1 GiB; a key file asking for far more is damaged or hostile.
const MAX_KDF_MEMORY = 4 * 2 ** 30;

/** Makes a new key pair with a random key id. */
export function generateKeyPair(): SecretKey {
  const pair = ed25519GenerateKeyPair();
  return { keyId: new Uint8Array(randomBytes(KEY_ID_BYTES)), publicKey: pair.publicKey, secretKey: pair.secretKey };
}

/** The public half of a secret key. */
export function publicKeyOf(key: SecretKey): PublicKey {
  return { keyId: key.keyId, publicKey: key.publicKey };
}

/** The base64 form minisign prints for `-P` (56 characters). */
export function encodePublicKeyBase64(key: PublicKey): string {
  return encodeBase64(concatBytes(ALG_ED, key.keyId, key.publicKey));
}

/** The text of a minisign public key file, byte-identical to what `minisign -G` writes. */
export function encodePublicKey(key: PublicKey, comment = `minisign public key ${formatKeyId(key.keyId)}`): string {
  return `${untrustedCommentLine(comment)}${encodePublicKeyBase64(key)}\n`;
}

/** Names what a base64 blob of the wrong kind most likely is, for error messages. */
function describeStructure(length: number): string {
  if (length === PUBLIC_KEY_BYTES) return 'a public key';
  if (length === SECRET_KEY_BYTES) return 'a secret key';
  if (length === SIGNATURE_BYTES) return 'a signature';
  return `${length} bytes of something else`;
}

function decodeAnyStructure(line: string): Uint8Array | null {
  return decodeBase64Exact(line, [PUBLIC_KEY_BYTES, SECRET_KEY_BYTES, SIGNATURE_BYTES]);
}

/** Parses the 56-character base64 public key that `minisign -P` takes. */
export function decodePublicKeyBase64(text: string, source = 'public key'): PublicKey {
  const trimmed = text.trim();
  const bytes = decodeBase64Exact(trimmed, [PUBLIC_KEY_BYTES]);
  if (!bytes) {
    const other = decodeAnyStructure(trimmed);
    const found = other ? `, found ${describeStructure(other.length)}` : '';
    throw new KeyFormatError(`${source} is not a minisign public key (expected 56 characters of base64${found})`);
  }
  if (!bytesEqual(bytes.subarray(0, 2), ALG_ED)) {
    throw new UnsupportedAlgorithmError(`${source} uses an unsupported signature algorithm`);
  }
  return { keyId: bytes.slice(2, 10), publicKey: bytes.slice(10, 42) };
}

/** Parses a minisign public key file. Its first line is a comment and is not checked, as in minisign. */
export function decodePublicKey(text: string, source = 'public key file'): PublicKey {
  const lines = splitLines(text);
  if (lines.length < 2 || lines[1] === '') {
    throw new KeyFormatError(`${source} is not a minisign public key (expected a comment line and a base64 line)`);
  }
  return decodePublicKeyBase64(lines[1]!, source);
}

/** libsodium's mapping from (opslimit, memlimit) to scrypt's N, r, p (`pickparams`). */
export function scryptParameters(limits: KdfLimits): { N: number; r: number; p: number } {
  const opslimit = Math.max(limits.opslimit, 32768);
  const memlimit = limits.memlimit;
  const r = 8;
  let p = 1;
  let maxN: number;
  const opsBound = opslimit < Math.floor(memlimit / 32);
  if (opsBound) {
    maxN = Math.floor(opslimit / (r * 4));
  } else {
    maxN = Math.floor(memlimit / (r * 128));
  }
  let log2N = 1;
  while (log2N < 63 && 2 ** log2N <= Math.floor(maxN / 2)) log2N++;
  if (!opsBound) {
    const maxrp = Math.min(Math.floor(Math.floor(opslimit / 4) / 2 ** log2N), 0x3fffffff);
    p = Math.floor(maxrp / r);
  }
  return { N: 2 ** log2N, r, p };
}

function deriveKeyStream(password: Uint8Array, salt: Uint8Array, limits: KdfLimits, source: string): Promise<Uint8Array> {
  const { N, r, p } = scryptParameters(limits);
  // Node's default scrypt memory cap (32 MiB) is far below minisign's 1 GiB: raise it to what
  // these parameters need (OpenSSL checks 128 * r * (N + p + 2) <= maxmem).
  const maxmem = 128 * r * (N + p + 2) + 1024 * 1024;
  if (maxmem > MAX_KDF_MEMORY) {
    return Promise.reject(new KeyFormatError(`${source} asks for ${Math.round(maxmem / 2 ** 20)} MiB of scrypt memory, more than psyops allows`));
  }
  return new Promise((resolve, reject) => {
    scryptCallback(password, salt, 104, { N, r, p, maxmem }, (error, key) =>
      error ? reject(new KeyFormatError(`${source}: key derivation failed (${error.message})`, { cause: error })) : resolve(new Uint8Array(key)),
    );
  });
}

function checksum(key: SecretKey): Promise<Uint8Array> {
  return blake2b256(concatBytes(ALG_ED, key.keyId, key.secretKey));
}

async function resolvePassword(password: PasswordInput): Promise<Uint8Array> {
  const value = typeof password === 'function' ? await password() : password;
  return typeof value === 'string' ? new TextEncoder().encode(value) : value;
}

export interface EncodeSecretKeyOptions {
  /** Encrypt with this password (scrypt + XOR, as minisign). Omit or null for an unencrypted key (`-W`). */
  password?: PasswordInput | null;
  /** First line of the file; minisign's default is used when omitted. */
  comment?: string;
  /** scrypt cost stored in the file; minisign's own (1 GiB) by default. */
  kdfLimits?: KdfLimits;
}

/**
 * The text of a minisign secret key file. Without a password the bytes equal `minisign -G -W`'s
 * (its checksum field is left zero, as minisign leaves it).
 */
export async function encodeSecretKey(key: SecretKey, options: EncodeSecretKeyOptions = {}): Promise<string> {
  const encrypted = options.password !== undefined && options.password !== null;
  const body = new Uint8Array(SECRET_KEY_BYTES);
  body.set(ALG_ED, 0);
  body.set(encrypted ? KDF_SCRYPT : KDF_NONE, 2);
  body.set(CHK_BLAKE2B, 4);
  body.set(key.keyId, 54);
  body.set(key.secretKey, 62);
  if (encrypted) {
    const limits = options.kdfLimits ?? MINISIGN_KDF_LIMITS;
    const salt = randomBytes(32);
    body.set(salt, 6);
    const view = Buffer.from(body.buffer);
    view.writeBigUInt64LE(BigInt(limits.opslimit), 38);
    view.writeBigUInt64LE(BigInt(limits.memlimit), 46);
    body.set(await checksum(key), 126);
    const stream = await deriveKeyStream(await resolvePassword(options.password!), salt, limits, 'new secret key');
    for (let i = 0; i < stream.length; i++) body[ENCRYPTED_REGION + i]! ^= stream[i]!;
  }
  return `${untrustedCommentLine(options.comment ?? 'minisign encrypted secret key')}${encodeBase64(body)}\n`;
}

function parseSecretKeyBody(text: string, source: string): Uint8Array {
  const lines = splitLines(text);
  const line = lines[1] ?? '';
  const bytes = decodeBase64Exact(line, [SECRET_KEY_BYTES]);
  if (!bytes) {
    const other = decodeAnyStructure(line);
    const found = other ? `, found ${describeStructure(other.length)}` : '';
    throw new KeyFormatError(`${source} is not a minisign secret key (expected a comment line and 212 characters of base64${found})`);
  }
  if (!bytesEqual(bytes.subarray(0, 2), ALG_ED)) throw new UnsupportedAlgorithmError(`${source} uses an unsupported signature algorithm`);
  if (!bytesEqual(bytes.subarray(4, 6), CHK_BLAKE2B)) throw new UnsupportedAlgorithmError(`${source} uses an unsupported checksum function`);
  const kdf = bytes.subarray(2, 4);
  if (!bytesEqual(kdf, KDF_SCRYPT) && !bytesEqual(kdf, KDF_NONE)) {
    throw new UnsupportedAlgorithmError(`${source} uses an unsupported key derivation function`);
  }
  return bytes;
}

/** True when the secret key file is password-protected (so decoding it will ask for the password). */
export function isEncryptedSecretKey(text: string, source = 'secret key file'): boolean {
  return bytesEqual(parseSecretKeyBody(text, source).subarray(2, 4), KDF_SCRYPT);
}

export interface DecodeSecretKeyOptions {
  /** Needed only for encrypted keys; a function is called only then. */
  password?: PasswordInput;
  /** Names the key in error messages. */
  source?: string;
}

/** Parses (and, when encrypted, decrypts) a minisign secret key file. */
export async function decodeSecretKey(text: string, options: DecodeSecretKeyOptions = {}): Promise<SecretKey> {
  const source = options.source ?? 'secret key file';
  const body = parseSecretKeyBody(text, source);
  const encrypted = bytesEqual(body.subarray(2, 4), KDF_SCRYPT);
  if (encrypted) {
    if (options.password === undefined) throw new PasswordRequiredError(`${source} is encrypted and no password was given`);
    const view = Buffer.from(body.buffer, body.byteOffset, body.length);
    const limits = { opslimit: Number(view.readBigUInt64LE(38)), memlimit: Number(view.readBigUInt64LE(46)) };
    const stream = await deriveKeyStream(await resolvePassword(options.password), body.subarray(6, 38), limits, source);
    for (let i = 0; i < stream.length; i++) body[ENCRYPTED_REGION + i]! ^= stream[i]!;
  }
  const key: SecretKey = {
    keyId: body.slice(54, 62),
    secretKey: body.slice(62, 126),
    publicKey: body.slice(94, 126),
  };
  const derived = ed25519PublicKeyFromSeed(key.secretKey.subarray(0, 32));
  // minisign leaves the checksum zero in keys made with -W and never checks it for them.
  if (encrypted && !timingSafeEqual(await checksum(key), body.subarray(126, 158))) {
    // A wrong password scrambles every decrypted byte; damage to the file scrambles only the bytes
    // damaged. The seed still giving the stored public half, or the checksum matching once the
    // public half is rebuilt from the seed, proves the password right: then the file is damaged.
    const rebuilt = { ...key, secretKey: concatBytes(key.secretKey.subarray(0, 32), derived) };
    if (bytesEqual(derived, key.publicKey) || timingSafeEqual(await checksum(rebuilt), body.subarray(126, 158))) {
      throw new KeyFormatError(`${source} is damaged (the password is right, but its key id, public half or checksum was altered)`);
    }
    throw new WrongPasswordError(`wrong password for ${source}`);
  }
  if (!bytesEqual(derived, key.publicKey)) throw new KeyFormatError(`${source} is damaged (its public half does not match its seed)`);
  return key;
}
