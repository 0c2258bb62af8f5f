/**
 * @psyops/signing: minisign-compatible keys, signatures and verification.
 *
 * Keys and signatures are byte-compatible with minisign 0.11 in both directions: prehashed
 * ("ED", the default) and legacy ("Ed") signatures, unencrypted and password-encrypted keys.
 */
export {
  generateKeyPair,
  publicKeyOf,
  encodePublicKey,
  encodePublicKeyBase64,
  decodePublicKey,
  decodePublicKeyBase64,
  encodeSecretKey,
  decodeSecretKey,
  isEncryptedSecretKey,
} from './keys.js';
export type { PublicKey, SecretKey, PasswordInput, KdfLimits, EncodeSecretKeyOptions, DecodeSecretKeyOptions } from './keys.js';
export { signBytes, signFile, verifyBytes, verifyFile, parseSignature } from './signature.js';
export type { Signature, SignOptions, VerifyOptions, VerifyResult, ProgressCallback } from './signature.js';
export { readPublicKeyFile, readSecretKeyFile, readSignatureFile } from './read.js';
export { formatKeyId } from './encoding.js';
export {
  KeyFormatError,
  SignatureFormatError,
  UnsupportedAlgorithmError,
  KeyIdMismatchError,
  SignatureError,
  TrustedCommentError,
  WrongPasswordError,
  PasswordRequiredError,
  CommentError,
} from './errors.js';
