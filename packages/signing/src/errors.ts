/**
 * Base of every error psyops raises on purpose. `code` is stable and machine-readable;
 * the CLI prints `psyops: <message> (<code>)`.
 */
export class PsyopsError extends Error {
  readonly code: string = 'PSYOPS_ERROR';

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

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

export type FileErrorCode = 'FILE_NOT_FOUND' | 'NOT_A_FILE' | 'FILE_UNREADABLE' | 'FILE_EXISTS' | 'FILE_TOO_LARGE';

/** A file could not be used: missing, a directory, unreadable, already present, too large. */
export class FileAccessError extends PsyopsError {
  override readonly code: FileErrorCode;

  constructor(
    message: string,
    code: FileErrorCode,
    readonly path: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.code = code;
  }
}
