/**
 * External programs, called one way: found up front (a missing one fails in one line that names
 * its Debian package), run with a timeout, and failing with their name and first error line.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { basename, delimiter, join } from 'node:path';
import { MissingToolError, ToolFailedError } from './errors.js';

// Debian puts admin programs in sbin, which is not on every user's PATH.
const EXTRA_DIRS = ['/usr/sbin', '/sbin'];
const found = new Map<string, string>();

/** The absolute path of a program on PATH (or in the sbin directories), or undefined. */
export function findProgram(name: string): string | undefined {
  const cached = found.get(name);
  if (cached) return cached;
  for (const dir of [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...EXTRA_DIRS]) {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      found.set(name, path);
      return path;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** The absolute path of a program; throws MissingToolError naming the Debian package that provides it. */
export function requireProgram(name: string, debianPackage: string): string {
  const path = findProgram(name);
  if (!path) throw new MissingToolError(name, debianPackage);
  return path;
}

export interface RunToolOptions {
  cwd?: string;
  /** Kills the program after this many milliseconds (default 10 minutes). */
  timeoutMs?: number;
  /** Set over the inherited environment (and `LC_ALL=C`, for output that parses the same everywhere); an undefined value removes a variable. */
  env?: Record<string, string | undefined>;
  input?: string | Uint8Array;
  signal?: AbortSignal;
  /** Output beyond this is an error (default 64 MiB). */
  maxOutputBytes?: number;
}

/** Runs a program to completion and returns its standard output; failure is a ToolFailedError. */
export function runTool(path: string, args: readonly string[], options: RunToolOptions = {}): Promise<string> {
  const timeoutMs = options.timeoutMs ?? 600_000;
  const maxOutput = options.maxOutputBytes ?? 64 << 20;
  const name = basename(path);
  return new Promise((resolve, reject) => {
    const child = spawn(path, args, {
      cwd: options.cwd,
      env: { ...process.env, LC_ALL: 'C', ...options.env },
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
      signal: options.signal,
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let size = 0;
    let overflow = false;
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxOutput) {
        overflow = true;
        child.kill('SIGKILL');
      } else into.push(chunk);
    };
    child.stdout?.on('data', collect(stdout));
    child.stderr?.on('data', collect(stderr));
    child.stdin?.on('error', () => undefined); // a program that exits without reading its input
    child.stdin?.end(options.input);
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (error.name === 'AbortError') reject(new ToolFailedError(`${name} was cancelled`, { cause: error }));
      else if (error.code === 'ENOENT') reject(new ToolFailedError(`${name} failed: ${path} not found`, { cause: error }));
      else reject(new ToolFailedError(`${name} failed: ${error.message}`, { cause: error }));
    });
    child.on('close', (code, signal) => {
      if (options.signal?.aborted) return; // reported by 'error'
      if (code === 0 && !overflow) return resolve(Buffer.concat(stdout).toString('utf8'));
      const firstLine = Buffer.concat(stderr).toString('utf8').trim().split('\n')[0];
      const reason = overflow
        ? `printed more than ${maxOutput} bytes`
        : signal === 'SIGKILL' && child.killed
          ? `timed out after ${timeoutMs} ms`
          : firstLine || (code === null ? `killed by ${signal}` : `exit code ${code}`);
      reject(new ToolFailedError(`${name} failed: ${reason}`));
    });
  });
}
