import type { Command } from 'commander';
import { PASSWORD_ENV } from '../password.js';

/** The password sources every command that reads or writes an encrypted key accepts. */
export function addPasswordOptions(command: Command): Command {
  return command
    .option('--password-file <FILE>', 'read the key password from the first line of FILE')
    .option('--password-command <CMD>', 'run CMD (through sh) and use the first line it prints, e.g. "gpg --decrypt .minisign-pass-secret"')
    .addHelpText('after', `\nPassword sources, first found wins: --password-file, --password-command, $${PASSWORD_ENV}, a prompt on the terminal.`);
}
