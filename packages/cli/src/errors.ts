import { PsyopsError } from '@psyops/core';

/** The command line asks for something that cannot be done as asked. */
export class UsageError extends PsyopsError {
  override readonly code = 'USAGE';
}
