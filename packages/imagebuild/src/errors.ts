import { PsyopsError } from '@psyops/signing';

/** A host program build-iso or qemu needs is not installed. */
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

/** The image configuration asks for something build-iso cannot do (bad value, unsupported flavor). */
export class ImageConfigError extends PsyopsError {
  override readonly code = 'BAD_IMAGE_CONFIG';
}
