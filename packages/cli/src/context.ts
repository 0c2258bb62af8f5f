import type { Command } from 'commander';
import { UsageError } from './errors.js';
import { findWorkspace, loadWorkspace, type Workspace } from './workspace.js';

/** Options every command accepts (given before or after the command name). */
export interface GlobalOptions {
  workspace?: string;
  debug?: boolean;
}

export function globalOptions(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

/** The workspace for this invocation (--workspace, PSYOPS_WORKSPACE, or found upwards). */
export async function currentWorkspace(command: Command): Promise<Workspace> {
  return loadWorkspace(findWorkspace({ explicit: globalOptions(command).workspace }));
}

/** The timestamp for default trusted comments: SOURCE_DATE_EPOCH when set, so builds are reproducible. */
export function sourceDateEpoch(): number | undefined {
  const value = process.env.SOURCE_DATE_EPOCH;
  if (value === undefined || value === '') return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`SOURCE_DATE_EPOCH must be a whole number of seconds, got "${value}"`);
  return Number(value);
}

/** Progress for long reads: a self-updating line on a terminal, nothing when piped. */
export function progressReporter(label: string, minBytes = 256 * 1024 * 1024): ((done: number, total: number) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  let lastPercent = -1;
  return (done, total) => {
    if (total < minBytes) return;
    const percent = Math.floor((done / total) * 100);
    if (percent === lastPercent) return;
    lastPercent = percent;
    process.stderr.write(`\r${label} ${percent}% of ${(total / 2 ** 20).toFixed(0)} MiB${percent === 100 ? '\r\x1b[K' : ''}`);
  };
}

/** A key path from the workspace config, for commands whose -s/-p was not given. */
export async function workspaceKeyPath(command: Command, which: 'secretKey' | 'publicKey'): Promise<string> {
  const workspace = await currentWorkspace(command);
  return workspace.path(workspace.config.signing[which]);
}
