/**
 * age v1 decryption for an X25519 identity on node:crypto alone (https://age-encryption.org/v1).
 *
 * The node decrypts its secrets at every boot; age-encryption does it in pure JavaScript
 * (@noble/curves, @noble/ciphers, ML-KEM…), which takes seconds to load and run under emulation,
 * where OpenSSL's X25519, HKDF, HMAC and ChaCha20-Poly1305 cost next to nothing. Encryption and
 * key generation stay with age-encryption on the host.
 */
import { createDecipheriv, createHmac, createPrivateKey, createPublicKey, diffieHellman, hkdfSync, timingSafeEqual, type KeyObject } from 'node:crypto';
import { AgeDecryptError } from './errors.js';

const VERSION_LINE = 'age-encryption.org/v1';
const ARMOR_BEGIN = '-----BEGIN AGE ENCRYPTED FILE-----';
const ARMOR_END = '-----END AGE ENCRYPTED FILE-----';
const CHUNK = 64 * 1024;
const TAG = 16;
/** DER prefix of an X25519 private key (PKCS#8): the raw 32 bytes follow. */
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');

// ---------- bech32 (BIP 173, without its length limit, as age uses it) ----------

const BECH32 = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const GENERATORS = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function polymod(values: number[]): number {
  let chk = 1;
  for (const value of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ value;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= GENERATORS[i]!;
  }
  return chk;
}

const expandHrp = (hrp: string) => [...[...hrp].map((c) => c.charCodeAt(0) >>> 5), 0, ...[...hrp].map((c) => c.charCodeAt(0) & 31)];

/** Regroups bits (8→5 or 5→8); undefined when the padding is not canonical. */
function convertBits(data: ArrayLike<number>, from: number, to: number, pad: boolean): number[] | undefined {
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  for (let i = 0; i < data.length; i++) {
    acc = (acc << from) | data[i]!;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out.push((acc >>> bits) & ((1 << to) - 1));
    }
  }
  if (pad) {
    if (bits > 0) out.push((acc << (to - bits)) & ((1 << to) - 1));
  } else if (bits >= from || ((acc << (to - bits)) & ((1 << to) - 1)) !== 0) return undefined;
  return out;
}

/** The HRP (lower case) and bytes of a bech32 string; undefined when it is not valid bech32. */
function bech32Decode(text: string): { hrp: string; bytes: Buffer } | undefined {
  if (text !== text.toLowerCase() && text !== text.toUpperCase()) return undefined;
  const lower = text.toLowerCase();
  const separator = lower.lastIndexOf('1');
  if (separator < 1 || lower.length - separator - 1 < 6) return undefined;
  const hrp = lower.slice(0, separator);
  const data: number[] = [];
  for (const c of lower.slice(separator + 1)) {
    const value = BECH32.indexOf(c);
    if (value < 0) return undefined;
    data.push(value);
  }
  if (polymod([...expandHrp(hrp), ...data]) !== 1) return undefined;
  const bytes = convertBits(data.slice(0, -6), 5, 8, false);
  return bytes ? { hrp, bytes: Buffer.from(bytes) } : undefined;
}

function bech32Encode(hrp: string, bytes: Uint8Array): string {
  const data = convertBits(bytes, 8, 5, true)!;
  const check = polymod([...expandHrp(hrp), ...data, 0, 0, 0, 0, 0, 0]) ^ 1;
  for (let i = 0; i < 6; i++) data.push((check >>> (5 * (5 - i))) & 31);
  return `${hrp}1${data.map((v) => BECH32[v]).join('')}`;
}

// ---------- identities ----------

/** A parsed age X25519 identity. */
export interface AgeX25519Identity {
  privateKey: KeyObject;
  /** The recipient's raw public key (32 bytes). */
  publicKey: Buffer;
}

/** The 32 secret bytes of `AGE-SECRET-KEY-1…` (bech32 alone, no cryptography); AgeDecryptError when it is not an age X25519 identity. */
export function decodeAgeIdentity(identity: string): Buffer {
  const decoded = bech32Decode(identity.trim());
  if (decoded?.hrp !== 'age-secret-key-' || decoded.bytes.length !== 32) throw new AgeDecryptError('not an age X25519 identity (AGE-SECRET-KEY-1…)');
  return decoded.bytes;
}

// The last identity parsed: a node decrypts all its secrets with one, and each parse costs tens of ms under emulation.
let lastParsed: { identity: string; parsed: AgeX25519Identity } | undefined;

/** Parses `AGE-SECRET-KEY-1…` into keys; AgeDecryptError when it is not an age X25519 identity. */
export function parseAgeIdentity(identity: string): AgeX25519Identity {
  if (lastParsed?.identity === identity) return lastParsed.parsed;
  // Any 32 bytes are an X25519 private key (the scalar is clamped when used).
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, decodeAgeIdentity(identity)]), format: 'der', type: 'pkcs8' });
  // Public keys go in and out as JWK: a raw copy, where DER goes through OpenSSL's decoders (~4× slower).
  const publicKey = Buffer.from(createPublicKey(privateKey).export({ format: 'jwk' }).x!, 'base64url');
  lastParsed = { identity, parsed: { privateKey, publicKey } };
  return lastParsed.parsed;
}

/** The recipient (`age1…`) of an identity, as `age-keygen -y` prints it. */
export function ageRecipientOf(identity: string): string {
  return bech32Encode('age', parseAgeIdentity(identity).publicKey);
}

// ---------- the format ----------

/** Canonical unpadded base64 (as the header uses it), or undefined. */
function base64Raw(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]*$/.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64').replace(/=+$/, '') === text ? bytes : undefined;
}

/** The binary file inside the ASCII armor (strict PEM: 64-column lines, canonical padded base64; LF or CRLF). */
function dearmor(text: string): Buffer {
  const lines = text.trim().split(/\r?\n/);
  if (lines[0] !== ARMOR_BEGIN) throw new AgeDecryptError('not an age file');
  if (lines.length < 3 || lines.at(-1) !== ARMOR_END) throw new AgeDecryptError(`armored age file without its ${ARMOR_END} line (truncated?)`);
  const body = lines.slice(1, -1);
  if (body.some((line, i) => line.length > 64 || (i < body.length - 1 && line.length !== 64) || line.length === 0)) {
    throw new AgeDecryptError('armored age file with malformed lines');
  }
  const joined = body.join('');
  const bytes = Buffer.from(joined, 'base64');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(joined) || bytes.toString('base64') !== joined) throw new AgeDecryptError('armored age file with invalid base64');
  return bytes;
}

interface Stanza {
  args: string[];
  body: Buffer;
}

interface Header {
  stanzas: Stanza[];
  /** The header up to and including `---`: what the MAC covers. */
  macInput: Buffer;
  mac: Buffer;
  payloadOffset: number;
}

function parseHeader(file: Buffer): Header {
  let offset = 0;
  const nextLine = (): string => {
    const end = file.indexOf(0x0a, offset);
    if (end < 0) throw new AgeDecryptError('truncated age header');
    const line = file.toString('latin1', offset, end);
    offset = end + 1;
    return line;
  };
  const version = nextLine();
  if (version !== VERSION_LINE)
    throw new AgeDecryptError(version.startsWith('age-encryption.org/') ? `unsupported age version "${version.slice(0, 40)}"` : 'not an age file');
  const stanzas: Stanza[] = [];
  for (;;) {
    const lineStart = offset;
    const line = nextLine();
    if (line.startsWith('---')) {
      const mac = line.startsWith('--- ') ? base64Raw(line.slice(4)) : undefined;
      if (mac?.length !== 32) throw new AgeDecryptError('malformed age header (MAC line)');
      if (stanzas.length === 0) throw new AgeDecryptError('malformed age header (no recipient stanza)');
      return { stanzas, macInput: file.subarray(0, lineStart + 3), mac, payloadOffset: offset };
    }
    if (!line.startsWith('-> ')) throw new AgeDecryptError('malformed age header');
    const args = line.slice(3).split(' ');
    if (args.some((arg) => !/^[\x21-\x7e]+$/.test(arg))) throw new AgeDecryptError('malformed age header (stanza arguments)');
    const bodyLines: string[] = [];
    for (;;) {
      const bodyLine = nextLine();
      bodyLines.push(bodyLine);
      if (bodyLine.length > 64) throw new AgeDecryptError('malformed age header (stanza body line longer than 64 columns)');
      if (bodyLine.length < 64) break;
    }
    const body = base64Raw(bodyLines.join(''));
    if (!body) throw new AgeDecryptError('malformed age header (stanza body is not canonical base64)');
    stanzas.push({ args, body });
  }
}

const hkdf = (ikm: Uint8Array, salt: Uint8Array, info: string) => Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));

/** ChaCha20-Poly1305 open; undefined when the tag does not authenticate. */
function open(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array): Buffer | undefined {
  if (sealed.length < TAG) return undefined;
  const decipher = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG));
  const plain = decipher.update(sealed.subarray(0, sealed.length - TAG));
  try {
    decipher.final();
  } catch {
    return undefined;
  }
  return plain;
}

function unwrapFileKey(stanzas: Stanza[], identity: AgeX25519Identity): Buffer {
  const types = stanzas.map((s) => s.args[0]!);
  if (types.includes('scrypt')) {
    throw new AgeDecryptError(
      stanzas.length === 1
        ? 'passphrase-encrypted (scrypt) age files are not supported on a node'
        : 'malformed age header (an scrypt stanza must be the only one)',
    );
  }
  const x25519 = stanzas.filter((s) => s.args[0] === 'X25519');
  if (x25519.length === 0) throw new AgeDecryptError(`no X25519 stanza for this identity (recipient types: ${[...new Set(types)].join(', ').slice(0, 100)})`);
  for (const stanza of x25519) {
    const share = stanza.args.length === 2 ? base64Raw(stanza.args[1]!) : undefined;
    if (share?.length !== 32 || stanza.body.length !== 32) throw new AgeDecryptError('malformed X25519 stanza');
    let shared: Buffer;
    try {
      const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: share.toString('base64url') }, format: 'jwk' });
      shared = diffieHellman({ privateKey: identity.privateKey, publicKey });
    } catch {
      // OpenSSL refuses a low-order share (an all-zero shared secret), which age must abort on.
      throw new AgeDecryptError('X25519 stanza with an invalid ephemeral share');
    }
    if (shared.every((b) => b === 0)) throw new AgeDecryptError('X25519 stanza with an invalid ephemeral share');
    const wrapKey = hkdf(shared, Buffer.concat([share, identity.publicKey]), 'age-encryption.org/v1/X25519');
    const fileKey = open(wrapKey, Buffer.alloc(12), stanza.body);
    if (fileKey) return fileKey;
  }
  throw new AgeDecryptError(`wrong key: none of the ${x25519.length} X25519 stanza(s) is for this identity`);
}

/** The payload: 16-byte nonce, then 64 KiB ChaCha20-Poly1305 chunks (STREAM), the last one flagged. */
function decryptPayload(fileKey: Buffer, payload: Buffer): Buffer {
  if (payload.length < 16 + TAG) throw new AgeDecryptError('age payload truncated');
  const key = hkdf(fileKey, payload.subarray(0, 16), 'payload');
  const chunks: Buffer[] = [];
  const nonce = Buffer.alloc(12);
  for (let offset = 16, counter = 0; ; counter++) {
    const last = payload.length - offset <= CHUNK + TAG;
    const sealed = payload.subarray(offset, last ? payload.length : offset + CHUNK + TAG);
    nonce.writeUIntBE(counter, 5, 6); // the 11-byte counter: its top bytes stay zero for any real file
    nonce[11] = last ? 1 : 0;
    const plain = open(key, nonce, sealed);
    if (!plain) throw new AgeDecryptError(`age payload tampered with or truncated (chunk ${counter} does not authenticate)`);
    if (last && plain.length === 0 && counter > 0) throw new AgeDecryptError('age payload with an empty last chunk');
    chunks.push(plain);
    if (last) return Buffer.concat(chunks);
    offset += CHUNK + TAG;
  }
}

/**
 * Decrypts an age v1 file, ASCII-armored or binary, with an X25519 identity (`AGE-SECRET-KEY-1…`).
 * Throws AgeDecryptError with one line: not an age file, no X25519 stanza, wrong key, header MAC
 * mismatch, tampered or truncated payload, scrypt (passphrase) files.
 */
export function decryptAge(file: string | Uint8Array, identity: string | AgeX25519Identity): Buffer {
  const bytes = typeof file === 'string' ? Buffer.from(file, 'utf8') : Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  const head = bytes.toString('latin1', 0, 200).trimStart();
  const binary = head.startsWith(ARMOR_BEGIN) ? dearmor(bytes.toString('latin1')) : bytes;
  if (!binary.toString('latin1', 0, 19).startsWith('age-encryption.org/')) throw new AgeDecryptError('not an age file');
  const header = parseHeader(binary);
  const fileKey = unwrapFileKey(header.stanzas, typeof identity === 'string' ? parseAgeIdentity(identity) : identity);
  const expected = createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header'))
    .update(header.macInput)
    .digest();
  if (!timingSafeEqual(expected, header.mac)) throw new AgeDecryptError('age header MAC mismatch (the header was tampered with)');
  return decryptPayload(fileKey, binary.subarray(header.payloadOffset));
}
