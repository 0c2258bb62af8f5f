import { constants } from 'node:os';
import { PsyopsError } from '@psyops/core';

/** The command line asks for something that cannot be done as asked: exit 2, as commander's own usage errors. */
export class UsageError extends PsyopsError {
  override readonly code = 'USAGE';
}

/** The exit code of a command interrupted by Ctrl-C (128 + SIGINT, as a shell reports it). */
export const EXIT_INTERRUPTED = 130;

/** A command was interrupted (Ctrl-C, or the signal named): it exits 128 + the signal's number, 130 for SIGINT. */
export class InterruptedError extends PsyopsError {
  override readonly code = 'INTERRUPTED';
  readonly exitCode: number;

  constructor(message: string, options: ErrorOptions & { signal?: NodeJS.Signals } = {}) {
    super(message, options);
    this.exitCode = 128 + constants.signals[options.signal ?? 'SIGINT'];
  }
}
