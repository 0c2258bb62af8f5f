import { spawn } from 'node:child_process';
import { NodeCommandError, SshError } from './errors.js';
import type { FleetNode } from './targets.js';

export interface SshOptions {
  /** `--identity FILE`: passed as `-i FILE`. */
  identity?: string;
  /** `--ssh-option OPT`, each passed as `-o OPT`. */
  options?: readonly string[];
  /** The whole command, connection included (the process is killed after it). */
  timeoutMs: number;
  /** ssh's own ConnectTimeout, seconds (default 10). */
  connectTimeoutS?: number;
  /** The ssh program (tests). */
  program?: string;
}

export interface SshResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** ssh reports its own failures (connection, authentication) with exit code 255. */
export const SSH_OWN_FAILURE = 255;
const MAX_OUTPUT = 4 * 1024 * 1024;

/**
 * The ssh command line for `command` as root on `node`. BatchMode comes first, so no
 * --ssh-option can make ssh ask for a password; the operator's options come before our
 * defaults (ssh keeps the first value of each option), so they can change ConnectTimeout.
 */
export function sshArguments(node: FleetNode, command: string, options: Omit<SshOptions, 'timeoutMs'> = {}): string[] {
  return [
    '-o',
    'BatchMode=yes',
    ...(options.identity !== undefined ? ['-i', options.identity] : []),
    ...(options.options ?? []).flatMap((option) => ['-o', option]),
    '-o',
    `ConnectTimeout=${options.connectTimeoutS ?? 10}`,
    // A node that reboots under the session drops it: notice within a minute, not never.
    '-o',
    'ServerAliveInterval=15',
    '-o',
    'ServerAliveCountMax=4',
    '-p',
    String(node.sshPort),
    '-l',
    'root',
    '--',
    node.host,
    command,
  ];
}

/** The last non-empty line of a program's stderr, for a one-line error. */
export function lastLine(text: string): string {
  return (
    text
      .split(/\r?\n/)
      .map((line) => line.trim())
      .filter((line) => line !== '')
      .at(-1) ?? ''
  );
}

/** Runs `command` on `node` over ssh; resolves with its exit code and output, rejects only when ssh cannot run or the time is up. */
export function runSsh(node: FleetNode, command: string, options: SshOptions): Promise<SshResult> {
  const program = options.program ?? 'ssh';
  const where = `ssh root@${node.host} -p ${node.sshPort}`;
  return new Promise((resolve, reject) => {
    const child = spawn(program, sshArguments(node, command, options), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (chunk: Buffer) => {
      if (stdout.length < MAX_OUTPUT) stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < MAX_OUTPUT) stderr += chunk.toString();
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    child.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const hint = error.code === 'ENOENT' ? ': install OpenSSH (Debian package openssh-client)' : '';
      reject(new SshError(`cannot run ${program} (${error.code ?? error.message})${hint}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) {
        reject(new SshError(`${where}: "${command}" did not finish within ${Math.round(options.timeoutMs / 1000)} s`));
        return;
      }
      resolve({ exitCode: code ?? (signal ? 128 : -1), stdout, stderr });
    });
  });
}

/** An ssh result as a one-line error: ssh's own (exit 255) or the node command's last stderr line. */
export function sshFailure(node: FleetNode, command: string, result: SshResult): SshError | NodeCommandError {
  const line = lastLine(result.stderr);
  if (result.exitCode === SSH_OWN_FAILURE) return new SshError(`ssh root@${node.host} -p ${node.sshPort}: ${line || 'failed (exit 255)'}`);
  return new NodeCommandError(`${node.name}: ${command} exited ${result.exitCode}${line ? `: ${line}` : ''}`);
}
