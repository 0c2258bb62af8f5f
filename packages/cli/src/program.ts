import { Command, CommanderError } from 'commander';
import { PsyopsError } from '@psyops/core';
import { apkCommand } from './commands/apk.js';
import { buildDiskCommand } from './commands/build-disk.js';
import { buildIsoCommand } from './commands/build-iso.js';
import { fleetCommand } from './commands/fleet.js';
import { initCommand } from './commands/init.js';
import { keygenCommand } from './commands/keygen.js';
import { nodeCommand } from './commands/node.js';
import { psynetCommand } from './commands/psynet.js';
import { qemuCommand } from './commands/qemu.js';
import { signCommand } from './commands/sign.js';
import { siteCommand } from './commands/site.js';
import { verifyCommand } from './commands/verify.js';
import { workspaceCommand } from './commands/workspace.js';
import { EXIT_INTERRUPTED } from './errors.js';
import { WORKSPACE_ENV } from './workspace.js';
import { version } from '../package.json';

/** Exit codes: 0 success, 1 any failure psyops reports, 2 a usage error (commander's or a USAGE one), 130 interrupted. */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export { EXIT_INTERRUPTED };

export function createProgram(): Command {
  const program = new Command('psyops')
    .description('Build, sign, publish and boot psyopsOS nodes.')
    .version(version, '-V, --version', 'print the psyops version')
    .option('--workspace <DIR>', `workspace directory (default: $${WORKSPACE_ENV}, or the nearest psyops.config.json upwards)`)
    .option('--debug', 'print stack traces with errors')
    .configureOutput({
      // commander's own errors (unknown option, missing argument) become one psyops line too.
      // Its "Did you mean …?" hint arrives on a second line: keep it, on the same line.
      outputError: (message, write) =>
        write(
          `psyops: ${message
            .replace(/^error: /, '')
            .trim()
            .replace(/\s*\n\s*/g, ' ')} (USAGE)\n`,
        ),
    })
    .exitOverride();
  const commands = [
    initCommand(),
    workspaceCommand(),
    keygenCommand(),
    signCommand(),
    verifyCommand(),
    psynetCommand(),
    apkCommand(),
    siteCommand(),
    buildIsoCommand(),
    buildDiskCommand(),
    qemuCommand(),
    nodeCommand(),
    fleetCommand(),
  ];
  for (const command of commands) {
    program.addCommand(command.exitOverride().configureOutput(program.configureOutput()));
  }
  return program;
}

/** The stable code of a psyops error; Node's own errors keep theirs (ENOENT…); anything else is a bug. */
function errorCode(error: unknown): string {
  if (error instanceof PsyopsError) return error.code;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'INTERNAL';
}

/** Runs the CLI; returns the exit code instead of exiting, so it can be embedded and tested. */
export async function runCli(argv: readonly string[]): Promise<number> {
  const program = createProgram();
  try {
    await program.parseAsync(argv as string[], { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end through here with exit code 0.
      return error.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    const debug = argv.includes('--debug');
    const code = errorCode(error);
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`psyops: ${message.split('\n')[0]} (${code})\n`);
    if (debug && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    // An error may ask for its own exit code (e.g. 124 for a timeout, like coreutils' timeout).
    const requested = error instanceof PsyopsError ? (error as { exitCode?: unknown }).exitCode : undefined;
    if (typeof requested === 'number') return requested;
    if (code === 'USAGE') return EXIT_USAGE;
    return code === 'INTERRUPTED' ? EXIT_INTERRUPTED : EXIT_FAILURE;
  }
}
