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

/** A host program (or a file a Debian package provides) is not installed. */
export class MissingToolError extends PsyopsError {
  override readonly code = 'MISSING_TOOL';

  constructor(
    readonly tool: string,
    readonly debianPackage: string,
  ) {
    super(`${tool} is not installed: install the Debian package ${debianPackage} (apt-get install ${debianPackage})`);
  }
}

/** An external program failed; the message carries its name and the first line of its error output. */
export class ToolFailedError extends PsyopsError {
  override readonly code = 'TOOL_FAILED';
}

/** A file is not the ELF program or object it should be. */
export class ElfFormatError extends PsyopsError {
  override readonly code = 'BAD_ELF';
}
