/** Byte-level helpers shared by the key and signature formats. */
import { CommentError } from './errors.js';

export const ALG_ED = Uint8Array.of(0x45, 0x64); // "Ed": Ed25519 over the message itself
export const ALG_ED_PREHASHED = Uint8Array.of(0x45, 0x44); // "ED": Ed25519 over BLAKE2b-512(message)
export const KDF_SCRYPT = Uint8Array.of(0x53, 0x63); // "Sc"
export const KDF_NONE = Uint8Array.of(0, 0);
export const CHK_BLAKE2B = Uint8Array.of(0x42, 0x32); // "B2"

export const KEY_ID_BYTES = 8;

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * Strict base64 as minisign decodes it: the standard alphabet with padding, a length that is a
 * multiple of 4, and exactly `expectedBytes` once decoded. Returns null when any of that fails
 * (Node's own decoder would silently skip bad characters).
 */
export function decodeBase64Exact(text: string, expectedBytes: readonly number[]): Uint8Array | null {
  if (text.length === 0 || text.length % 4 !== 0 || !BASE64.test(text)) return null;
  const bytes = new Uint8Array(Buffer.from(text, 'base64'));
  return expectedBytes.includes(bytes.length) ? bytes : null;
}

export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * The key id as minisign shows it: the 8 raw bytes read as a little-endian uint64, upper-case
 * hex. Like minisign 0.11 (Debian's), leading zeros are not printed.
 */
export function formatKeyId(keyId: Uint8Array): string {
  if (keyId.length !== KEY_ID_BYTES) throw new RangeError(`a key id has ${KEY_ID_BYTES} bytes, got ${keyId.length}`);
  return Buffer.from(keyId).readBigUInt64LE(0).toString(16).toUpperCase();
}

/**
 * Splits a minisign text file into lines. minisign 0.11 ends a value at the first CR or LF, so
 * files with CRLF line ends are read the same as LF ones.
 */
export function splitLines(text: string): string[] {
  return text.split('\n').map((line) => {
    const cr = line.indexOf('\r');
    return cr === -1 ? line : line.slice(0, cr);
  });
}

/** Throws `makeError(reason)` when a comment cannot be stored on one line of at most `maxBytes`. */
export function checkComment(comment: string, what: string, maxBytes: number, makeError: (reason: string) => Error): void {
  if (/[\r\n]/.test(comment)) throw makeError(`${what} must be one line (it contains a line break)`);
  const bytes = Buffer.byteLength(comment, 'utf8');
  if (bytes > maxBytes) throw makeError(`${what} is too long (${bytes} bytes, at most ${maxBytes})`);
}

export const UNTRUSTED_PREFIX = 'untrusted comment: ';
/** minisign reads a comment line (prefix and line end included) into a 1024-byte buffer. */
export const MAX_UNTRUSTED_LINE = 1023;

/** The first line of every minisign file, refusing comments minisign could not read back. */
export function untrustedCommentLine(comment: string): string {
  checkComment(comment, 'untrusted comment', MAX_UNTRUSTED_LINE - UNTRUSTED_PREFIX.length - 1, (r) => new CommentError(r));
  return `${UNTRUSTED_PREFIX}${comment}\n`;
}
