import { basename } from 'node:path';
import { createBlake2b512 } from './blake2b.js';
import {
  ALG_ED,
  ALG_ED_PREHASHED,
  bytesEqual,
  checkComment,
  concatBytes,
  decodeBase64Exact,
  encodeBase64,
  formatKeyId,
  splitLines,
  MAX_UNTRUSTED_LINE,
  UNTRUSTED_PREFIX,
  untrustedCommentLine,
} from './encoding.js';
import { CommentError, KeyIdMismatchError, SignatureError, SignatureFormatError, TrustedCommentError, UnsupportedAlgorithmError } from './errors.js';
import { ed25519Sign, ed25519Verify } from './ed25519.js';
import { forEachChunk, readRegularFile } from '@psyops/core';
import type { PublicKey, SecretKey } from './keys.js';

const TRUSTED_PREFIX = 'trusted comment: ';
// minisign refuses trusted comments of 8174 bytes and more when signing.
const MAX_TRUSTED_COMMENT = 8173;
/** Legacy signatures cover the whole file in memory, as in minisign; beyond this use prehashing. */
const MAX_LEGACY_BYTES = 1024 ** 3;

/** A parsed `.minisig` file. */
export interface Signature {
  /** `prehashed` ("ED", BLAKE2b-512 of the file is signed) or `legacy` ("Ed", the file itself). */
  algorithm: 'prehashed' | 'legacy';
  keyId: Uint8Array;
  /** Ed25519 signature of the message (or of its BLAKE2b-512 digest), 64 bytes. */
  signature: Uint8Array;
  untrustedComment: string;
  trustedComment: string;
  /** Ed25519 signature of `signature || trustedComment`, 64 bytes. */
  globalSignature: Uint8Array;
}

export interface SignOptions {
  /** Sign the message itself ("Ed") instead of its BLAKE2b-512 digest ("ED", the default). */
  legacy?: boolean;
  /** Default: `timestamp:<unix time>\tfile:<name>` plus `\thashed` when prehashed, as minisign. */
  trustedComment?: string;
  /** Default: `signature from minisign secret key`, as minisign. */
  untrustedComment?: string;
  /** Unix time for the default trusted comment (for reproducible output, e.g. SOURCE_DATE_EPOCH). */
  timestamp?: number;
  /** File name for the default trusted comment; signFile uses the file's base name. */
  fileName?: string;
  /** Called as a streamed file is read (signFile only). */
  onProgress?: ProgressCallback;
}

/** Reports how much of a streamed file has been read. */
export type ProgressCallback = (bytesDone: number, bytesTotal: number) => void;

export interface VerifyResult {
  trustedComment: string;
  untrustedComment: string;
  algorithm: Signature['algorithm'];
  keyId: Uint8Array;
}

export interface VerifyOptions {
  /** Refuse legacy ("Ed") signatures, like `minisign -V -H`. */
  requirePrehashed?: boolean;
  /** Names the signature in error messages. */
  source?: string;
  /** Called as a streamed file is read (verifyFile only). */
  onProgress?: ProgressCallback;
}

function defaultTrustedComment(options: SignOptions, prehashed: boolean): string {
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  const file = options.fileName !== undefined ? `\tfile:${basename(options.fileName)}` : '';
  return `timestamp:${timestamp}${file}${prehashed ? '\thashed' : ''}`;
}

/** Builds the `.minisig` text for a message digest (prehashed) or the message itself (legacy). */
function signMessage(message: Uint8Array, key: SecretKey, options: SignOptions, prehashed: boolean): string {
  const untrusted = options.untrustedComment || 'signature from minisign secret key';
  const trusted = options.trustedComment || defaultTrustedComment(options, prehashed);
  const firstLine = untrustedCommentLine(untrusted);
  checkComment(trusted, 'trusted comment', MAX_TRUSTED_COMMENT, (r) => new CommentError(r));
  const signature = ed25519Sign(message, key.secretKey);
  const globalSignature = ed25519Sign(concatBytes(signature, new TextEncoder().encode(trusted)), key.secretKey);
  const sigStruct = concatBytes(prehashed ? ALG_ED_PREHASHED : ALG_ED, key.keyId, signature);
  return `${firstLine}${encodeBase64(sigStruct)}\n${TRUSTED_PREFIX}${trusted}\n${encodeBase64(globalSignature)}\n`;
}

/** BLAKE2b-512 of a file, streamed: memory use does not depend on the file's size. */
async function prehashFile(path: string, what = 'file to hash', onProgress?: ProgressCallback): Promise<Uint8Array> {
  const hash = createBlake2b512();
  await forEachChunk(path, what, (chunk) => hash.update(chunk), onProgress);
  return hash.digest();
}

function prehashBytes(data: Uint8Array): Uint8Array {
  const hash = createBlake2b512();
  hash.update(data);
  return hash.digest();
}

/** Signs bytes in memory; returns the `.minisig` text. */
export function signBytes(data: Uint8Array, key: SecretKey, options: SignOptions = {}): string {
  const prehashed = !options.legacy;
  return signMessage(prehashed ? prehashBytes(data) : data, key, options, prehashed);
}

/** Signs a file (streamed unless legacy); returns the `.minisig` text. */
export async function signFile(path: string, key: SecretKey, options: SignOptions = {}): Promise<string> {
  const withName = { fileName: path, ...options };
  if (options.legacy) return signMessage(await readLegacyMessage(path, 'file to sign'), key, withName, false);
  return signMessage(await prehashFile(path, 'file to sign', options.onProgress), key, withName, true);
}

function readLegacyMessage(path: string, what: string): Promise<Buffer> {
  return readRegularFile(path, `${what} (legacy mode reads it whole)`, MAX_LEGACY_BYTES);
}

/** Parses `.minisig` text, checking its structure the way minisign does. */
export function parseSignature(text: string, source = 'signature file'): Signature {
  const bad = (reason: string) => new SignatureFormatError(`${source} ${reason}`);
  const [untrustedLine = '', sigLine, trustedLine, globalLine] = splitLines(text);
  if (!untrustedLine.startsWith(UNTRUSTED_PREFIX)) throw bad('is not a minisign signature (it does not start with "untrusted comment: ")');
  if (!sigLine) throw bad('is truncated (no signature line)');
  if (!trustedLine) throw bad('is truncated (no trusted comment)');
  if (!trustedLine.startsWith(TRUSTED_PREFIX)) throw bad('is not a minisign signature (its third line does not start with "trusted comment: ")');
  if (!globalLine) throw bad('is truncated (no global signature)');
  if (Buffer.byteLength(untrustedLine) + 1 > MAX_UNTRUSTED_LINE) throw bad('has an untrusted comment that is too long');
  if (!trustedLine.startsWith(TRUSTED_PREFIX)) throw bad('is not a minisign signature (third line must start with "trusted comment: ")');
  const sigStruct = decodeBase64Exact(sigLine, [74]);
  const globalSignature = decodeBase64Exact(globalLine, [64]);
  if (!sigStruct || !globalSignature) throw bad('is damaged (its base64 does not decode to a minisign signature)');
  const alg = sigStruct.subarray(0, 2);
  let algorithm: Signature['algorithm'];
  if (bytesEqual(alg, ALG_ED_PREHASHED)) algorithm = 'prehashed';
  else if (bytesEqual(alg, ALG_ED)) algorithm = 'legacy';
  else throw new UnsupportedAlgorithmError(`${source} uses an unsupported signature algorithm`);
  return {
    algorithm,
    keyId: sigStruct.slice(2, 10),
    signature: sigStruct.slice(10, 74),
    untrustedComment: untrustedLine.slice(UNTRUSTED_PREFIX.length),
    trustedComment: trustedLine.slice(TRUSTED_PREFIX.length),
    globalSignature,
  };
}

function checkBeforeMessage(publicKey: PublicKey, signature: Signature, options: VerifyOptions, source: string): void {
  if (options.requirePrehashed && signature.algorithm === 'legacy') {
    throw new UnsupportedAlgorithmError(`${source} is a legacy (non-prehashed) signature and prehashed signatures are required`);
  }
  if (!bytesEqual(signature.keyId, publicKey.keyId)) {
    const sigId = formatKeyId(signature.keyId);
    const keyId = formatKeyId(publicKey.keyId);
    throw new KeyIdMismatchError(`${source} was made by key ${sigId}, not by the public key given (${keyId})`, sigId, keyId);
  }
}

function checkSignatures(message: Uint8Array, publicKey: PublicKey, signature: Signature, what: string, source: string): VerifyResult {
  if (!ed25519Verify(message, signature.signature, publicKey.publicKey)) {
    throw new SignatureError(`signature verification failed: ${what} does not match ${source}`);
  }
  const signedComment = concatBytes(signature.signature, new TextEncoder().encode(signature.trustedComment));
  if (!ed25519Verify(signedComment, signature.globalSignature, publicKey.publicKey)) {
    throw new TrustedCommentError(`trusted comment verification failed: the trusted comment in ${source} was changed`);
  }
  return {
    trustedComment: signature.trustedComment,
    untrustedComment: signature.untrustedComment,
    algorithm: signature.algorithm,
    keyId: signature.keyId,
  };
}

function asSignature(signature: string | Signature, source: string): Signature {
  return typeof signature === 'string' ? parseSignature(signature, source) : signature;
}

/** Verifies bytes in memory against `.minisig` text (or a parsed signature). */
export function verifyBytes(data: Uint8Array, publicKey: PublicKey, signature: string | Signature, options: VerifyOptions = {}): VerifyResult {
  const source = options.source ?? 'signature';
  const sig = asSignature(signature, source);
  checkBeforeMessage(publicKey, sig, options, source);
  const message = sig.algorithm === 'prehashed' ? prehashBytes(data) : data;
  return checkSignatures(message, publicKey, sig, 'the data', source);
}

/**
 * Verifies a file against `.minisig` text (or a parsed signature): key id, then the signature
 * over the file, then the global signature over the trusted comment. Prehashed signatures are
 * checked streaming, so the file's size does not matter.
 */
export async function verifyFile(path: string, publicKey: PublicKey, signature: string | Signature, options: VerifyOptions = {}): Promise<VerifyResult> {
  const source = options.source ?? 'signature';
  const sig = asSignature(signature, source);
  checkBeforeMessage(publicKey, sig, options, source);
  const message = sig.algorithm === 'prehashed' ? await prehashFile(path, 'signed file', options.onProgress) : await readLegacyMessage(path, 'signed file');
  return checkSignatures(message, publicKey, sig, path, source);
}
