import { PsyopsError } from '@psyops/core';

/** A key file (or inline key) is not a minisign key of the expected kind. */
export class KeyFormatError extends PsyopsError {
  override readonly code = 'MALFORMED_KEY';
}

/** A signature file is not a well-formed minisign signature. */
export class SignatureFormatError extends PsyopsError {
  override readonly code = 'MALFORMED_SIGNATURE';
}

/** The key or signature names an algorithm minisign does not define. */
export class UnsupportedAlgorithmError extends PsyopsError {
  override readonly code = 'UNSUPPORTED_ALGORITHM';
}

/** The signature was made by another key than the one given. */
export class KeyIdMismatchError extends PsyopsError {
  override readonly code = 'KEY_ID_MISMATCH';

  constructor(
    message: string,
    readonly signatureKeyId: string,
    readonly publicKeyId: string,
  ) {
    super(message);
  }
}

/** The signature does not match the data: the file was changed or the signature forged. */
export class SignatureError extends PsyopsError {
  override readonly code = 'BAD_SIGNATURE';
}

/** The global signature does not cover this trusted comment: the comment was changed. */
export class TrustedCommentError extends PsyopsError {
  override readonly code = 'BAD_TRUSTED_COMMENT';
}

/** The password does not decrypt the secret key (its checksum does not match). */
export class WrongPasswordError extends PsyopsError {
  override readonly code = 'WRONG_PASSWORD';
}

/** The secret key is encrypted and no password was supplied. */
export class PasswordRequiredError extends PsyopsError {
  override readonly code = 'PASSWORD_REQUIRED';
}

/** A comment cannot be written into a minisign file (line break, too long). */
export class CommentError extends PsyopsError {
  override readonly code = 'INVALID_COMMENT';
}
