import { readFile } from 'node:fs/promises';
import { PasswordRequiredError } from '@psyops/signing';
import { PsyopsError, fileAccessError } from '@psyops/core';
import { InterruptedError } from './errors.js';

/** Where a minisign password may come from, in the order they are tried. */
export interface PasswordSources {
  /** --password-file FILE: the first line of the file. */
  passwordFile?: string;
  /** --password-command CMD: the first line CMD prints (e.g. `gpg --decrypt .minisign-pass-secret`). */
  passwordCommand?: string;
}

export const PASSWORD_ENV = 'PSYOPS_MINISIGN_PASSWORD';
const COMMAND_TIMEOUT_MS = 120_000;

export class PasswordSourceError extends PsyopsError {
  override readonly code = 'PASSWORD_SOURCE_FAILED';
}

/** minisign reads a password as one line, ending at the first CR or LF; so do we, from every source. */
function firstLine(text: string): string {
  return text.split(/[\r\n]/, 1)[0] ?? '';
}

async function readPasswordFile(path: string): Promise<string> {
  try {
    return firstLine(await readFile(path, 'utf8'));
  } catch (error) {
    throw fileAccessError(error, path, 'password file');
  }
}

async function runPasswordCommand(command: string): Promise<string> {
  try {
    // Loaded only here: execa takes longer to import than the rest of the CLI.
    const { execa } = await import('execa');
    // stdin and stderr stay the terminal's, so gpg's pinentry can still ask.
    const result = await execa(command, { shell: true, stdin: 'inherit', stderr: 'inherit', timeout: COMMAND_TIMEOUT_MS });
    return firstLine(result.stdout);
  } catch (error) {
    const detail = (error as { timedOut?: boolean; exitCode?: number }).timedOut
      ? `did not finish within ${COMMAND_TIMEOUT_MS / 1000} s`
      : `failed (exit code ${(error as { exitCode?: number }).exitCode ?? 'unknown'})`;
    throw new PasswordSourceError(`--password-command ${detail}`);
  }
}

// Keystrokes that arrived after the line a prompt needed belong to the next prompt.
let typedAhead = '';

/** Reads a line from the terminal without echoing it. */
function promptHidden(prompt: string): Promise<string> {
  const input = process.stdin;
  process.stderr.write(prompt);
  input.setRawMode(true);
  input.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let value = '';
    const finish = (rest: string) => {
      typedAhead = rest;
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
    };
    const onData = (chunk: string) => {
      for (let i = 0; i < chunk.length; i++) {
        const ch = chunk[i]!;
        if (ch === '\r' || ch === '\n') {
          finish(chunk.slice(i + 1));
          resolve(value);
          return;
        }
        if (ch === '\u0003' || (ch === '\u0004' && value === '')) {
          finish('');
          reject(new InterruptedError('password prompt interrupted'));
          return;
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else if (ch >= ' ') value += ch;
      }
    };
    input.on('data', onData);
    input.resume();
    if (typedAhead) onData(typedAhead);
  });
}

/**
 * Gets a password for `purpose` from, in order: --password-file, --password-command, the
 * PSYOPS_MINISIGN_PASSWORD environment variable, or a prompt on the terminal (twice when
 * `confirm`). Without any of them and without a terminal it fails with PASSWORD_REQUIRED.
 */
export async function obtainPassword(sources: PasswordSources, purpose: string, confirm = false): Promise<string> {
  const password = await passwordFromSources(sources, purpose, confirm);
  // Every password becomes a key through scrypt (minisign's 1 GiB setting): seconds of silence otherwise.
  if (process.stderr.isTTY) process.stderr.write('deriving the key from the password (scrypt, a few seconds)…\n');
  return password;
}

async function passwordFromSources(sources: PasswordSources, purpose: string, confirm: boolean): Promise<string> {
  if (sources.passwordFile !== undefined) return readPasswordFile(sources.passwordFile);
  if (sources.passwordCommand !== undefined) return runPasswordCommand(sources.passwordCommand);
  const fromEnv = process.env[PASSWORD_ENV];
  if (fromEnv !== undefined) return firstLine(fromEnv);
  if (!process.stdin.isTTY) {
    throw new PasswordRequiredError(
      `${purpose} needs a password and there is no terminal to ask on: set ${PASSWORD_ENV}, or pass --password-file FILE or --password-command CMD`,
    );
  }
  const password = await promptHidden(`Password for ${purpose}: `);
  if (confirm && (await promptHidden('Password (again): ')) !== password) {
    throw new PasswordSourceError('the two passwords do not match');
  }
  return password;
}
