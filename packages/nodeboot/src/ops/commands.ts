/**
 * The node commands beside postboot: `psyops-node apply`, `upgrade` and `write-bootmedia`
 * (psyopsOS-write-bootmedia execs the last). Each takes its arguments and returns the exit code:
 * 0 done, 1 refused or failed (one line `psyops-node: … (CODE)` on stderr), 2 a usage error.
 */
import { statSync } from 'node:fs';
import { PsyopsError } from '@psyops/core';
import { LinuxSystem, type NodeSystem } from '../system.js';
import { runApply } from './apply.js';
import { checkWholeDisk, findBootDisk, mountsOn, releaseMounts, type BlockDeviceOptions } from './block-devices.js';
import { verifyBootImage, writeBootImage } from './bootmedia.js';
import { secretMinisignKey } from './node-identity.js';
import { runUpgrade } from './upgrade.js';

export type OpsCommand = (args: string[]) => Promise<number>;

/** Where a command writes, and the machine it acts on (the real node unless a test says otherwise). */
export interface OpsIo {
  system: () => NodeSystem;
  out: (text: string) => void;
  err: (text: string) => void;
  env: NodeJS.ProcessEnv;
}

class UsageError extends PsyopsError {
  override readonly code = 'USAGE';
}

interface Parsed {
  positional: string[];
  json: boolean;
  signature?: string;
}

function parse(args: string[], usage: string, allowed: { signature?: boolean; maxPositional: number }): Parsed {
  const parsed: Parsed = { positional: [], json: false };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--json') parsed.json = true;
    else if (arg === '--signature' && allowed.signature && args[i + 1] !== undefined) parsed.signature = args[++i]!;
    else if (arg.startsWith('-')) throw new UsageError(`unknown option ${arg}; ${usage}`);
    else parsed.positional.push(arg);
  }
  if (parsed.positional.length > allowed.maxPositional) throw new UsageError(usage);
  return parsed;
}

const oneLine = (error: unknown) => (error instanceof Error ? error.message : String(error)).split('\n')[0];

/** Runs a command body, turning its errors into the one-line report and the exit code. */
function guarded(io: OpsIo, body: (args: string[]) => Promise<number>): OpsCommand {
  return async (args) => {
    try {
      return await body(args);
    } catch (error) {
      const code = error instanceof PsyopsError ? error.code : 'FAILED';
      io.err(`psyops-node: ${oneLine(error)} (${code})\n`);
      return error instanceof UsageError ? 2 : 1;
    }
  };
}

const APPLY_USAGE = 'usage: psyops-node apply [--json]';
const UPGRADE_USAGE = 'usage: psyops-node upgrade [--json]';
const BOOTMEDIA_USAGE = 'usage: psyops-node write-bootmedia ISO [DEVICE] [--signature FILE] [--json]';

export function makeOpsCommands(io: OpsIo): Record<'apply' | 'upgrade' | 'write-bootmedia', OpsCommand> {
  const problemsExit = (problems: string[]) => {
    for (const problem of problems) io.err(`psyops-node: ${problem}\n`);
    return problems.length > 0 ? 1 : 0;
  };
  return {
    apply: guarded(io, async (args) => {
      const { json } = parse(args, APPLY_USAGE, { maxPositional: 0 });
      const report = await runApply(io.system());
      if (json) io.out(`${JSON.stringify(report)}\n`);
      else {
        for (const change of report.changed) io.out(`${change}\n`);
        io.out(
          report.action === 'unchanged'
            ? `config version ${report.to} unchanged\n`
            : `config version ${report.from ?? 'none'} -> ${report.to} applied: ${report.changed.length} change(s)\n`,
        );
      }
      return problemsExit(report.problems);
    }),
    upgrade: guarded(io, async (args) => {
      const { json } = parse(args, UPGRADE_USAGE, { maxPositional: 0 });
      const report = await runUpgrade(io.system());
      if (json) io.out(`${JSON.stringify(report)}\n`);
      else {
        for (const { name, from, to } of report.upgraded) io.out(`upgraded ${name} ${from} -> ${to}\n`);
        io.out(`${report.upgraded.length} upgraded, ${report.unchanged} unchanged (${report.client})\n`);
      }
      return problemsExit(report.problems);
    }),
    'write-bootmedia': guarded(io, async (args) => {
      const { positional, json, signature } = parse(args, BOOTMEDIA_USAGE, { signature: true, maxPositional: 2 });
      const [iso, explicit] = positional;
      if (iso === undefined) throw new UsageError(BOOTMEDIA_USAGE);
      const isoStat = statSync(iso, { throwIfNoEntry: false });
      if (!isoStat?.isFile()) throw new UsageError(`${iso} is not a file`);
      const system = io.system();
      const devices: BlockDeviceOptions = {
        ...(io.env.PSYOPS_SYSFS ? { sysfs: io.env.PSYOPS_SYSFS } : {}),
        ...(io.env.PSYOPS_BOOT_LABEL_PREFIX ? { labelPrefix: io.env.PSYOPS_BOOT_LABEL_PREFIX } : {}),
      };
      const device = explicit ?? findBootDisk(devices);
      checkWholeDisk(device, isoStat.size, devices);
      // Verified before anything is unmounted or written: a tampered ISO leaves the node as it was.
      const trustedComment = await verifyBootImage(iso, await secretMinisignKey(system), signature);
      if (!json) io.out(`${iso}: signature verified (${trustedComment})\n`);
      const unmounted = await releaseMounts(mountsOn(device, devices), (command, commandArgs, timeoutMs) => system.run(command, commandArgs, timeoutMs));
      if (!json) for (const line of unmounted) io.out(`${line}\n`);
      if (!json) io.out(`writing ${iso} (${isoStat.size} bytes) to ${device}\n`);
      const written = await writeBootImage(iso, {
        path: device,
        async beforeReadBack() {
          await system.run('sync', [], 300_000);
          // The read-back must come from the disk, not from the pages just written.
          await system.run('blockdev', ['--flushbufs', device], 60_000);
        },
      });
      const report = { iso, device, bytes: written.bytes, ms: written.ms, sha256: written.sha256, unmounted, trustedComment };
      if (json) io.out(`${JSON.stringify(report)}\n`);
      else
        io.out(
          `done: ${device} now holds ${iso}: ${written.bytes} bytes in ${(written.ms / 1000).toFixed(1)} s, read back and verified (sha256 ${written.sha256})\n`,
        );
      return 0;
    }),
  };
}

/** The commands on the node itself (main.ts dispatches `psyops-node <command>` to them). */
export const opsCommands: Record<string, OpsCommand> = makeOpsCommands({
  system: () => new LinuxSystem(),
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  env: process.env,
});
