import { PsyopsError } from '@psyops/core';

/** The image configuration asks for something build-iso cannot do (bad value, unsupported flavor). */
export class ImageConfigError extends PsyopsError {
  override readonly code = 'BAD_IMAGE_CONFIG';
}
