import { PsyopsError } from '@psyops/core';

/** Not a well-formed APK, APKINDEX or tar/gzip stream (truncated, corrupted, wrong layout). */
export class ApkFormatError extends PsyopsError {
  override readonly code = 'APK_FORMAT';
}

/** A gzip stream inflates to more than its limit (a gzip bomb, or a genuinely huge file: raise the named option). */
export class ApkTooLargeError extends PsyopsError {
  override readonly code = 'APK_TOO_LARGE';

  constructor(
    message: string,
    readonly limit: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** A signature is present for a trusted key but does not match: the file was changed. */
export class ApkSignatureError extends PsyopsError {
  override readonly code = 'APK_BAD_SIGNATURE';
}

/** No signature made by a key from the keys directory (unsigned, or signed by an unknown key). */
export class ApkUntrustedError extends PsyopsError {
  override readonly code = 'APK_UNTRUSTED';
}

/** A hash inside the package or index (datahash, per-file SHA-1, index C:/S:) does not match. */
export class ApkChecksumError extends PsyopsError {
  override readonly code = 'APK_CHECKSUM_MISMATCH';
}

/** A version string that apk's grammar does not accept. */
export class InvalidVersionError extends PsyopsError {
  override readonly code = 'INVALID_VERSION';
}

/** A dependency token (`name>=1.2`, `!name`, `so:libc.so`) that cannot be parsed. */
export class InvalidDependencyError extends PsyopsError {
  override readonly code = 'INVALID_DEPENDENCY';
}

/** A package spec with a missing or invalid field, or contents that cannot go into a package. */
export class InvalidSpecError extends PsyopsError {
  override readonly code = 'INVALID_SPEC';
}

/** An archive entry that would write outside the target directory, or a device node not allowed. */
export class UnsafeEntryError extends PsyopsError {
  override readonly code = 'UNSAFE_ENTRY';
}

/** The requested world cannot be installed from the given indexes; the message names the chain. */
export class UnsatisfiableError extends PsyopsError {
  override readonly code = 'UNSATISFIABLE';

  constructor(
    message: string,
    readonly chain: readonly string[],
  ) {
    super(message);
  }
}

/** A package or index could not be downloaded. */
export class ApkFetchError extends PsyopsError {
  override readonly code = 'APK_FETCH_FAILED';
}

/** A key file is not an RSA key abuild/apk can use. */
export class ApkKeyError extends PsyopsError {
  override readonly code = 'APK_BAD_KEY';
}

/** A package carries a file another installed package owns, and no `replaces` allows it (apk: "trying to overwrite … owned by …"). */
export class FileConflictError extends PsyopsError {
  override readonly code = 'APK_FILE_CONFLICT';
}
