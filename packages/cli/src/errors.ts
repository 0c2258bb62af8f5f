import { PsyopsError } from '@psyops/core';

/** The command line asks for something that cannot be done as asked: exit 2, as commander's own usage errors. */
export class UsageError extends PsyopsError {
  override readonly code = 'USAGE';
}
