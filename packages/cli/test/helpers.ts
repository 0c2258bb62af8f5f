import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, onTestFinished } from 'vitest';

/** The built CLI: tests run what users run (turbo builds it before `test`). */
export const CLI = join(import.meta.dirname, '..', 'dist', 'cli.js');

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  input?: string;
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs `psyops ARGS…` with a clean environment (no workspace or password leaking in from the caller). */
export async function psyops(args: string[], options: RunOptions = {}): Promise<CliResult> {
  const result = await execa('node', [CLI, ...args], {
    cwd: options.cwd,
    env: { PSYOPS_WORKSPACE: undefined, PSYOPS_MINISIGN_PASSWORD: undefined, SOURCE_DATE_EPOCH: undefined, ...options.env },
    input: options.input ?? '',
    stripFinalNewline: false,
    reject: false,
    // Room for a QEMU boot of a fixture while other packages' tests load both cores (CI runs them together).
    timeout: 170_000,
  });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

/** A temporary directory, removed after the test that made it (or, at file level, after the file). */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `psyops-${prefix}-`));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  try {
    onTestFinished(remove); // throws outside a running test
  } catch {
    afterAll(remove);
  }
  return dir;
}

/** The names in a directory, sorted: to prove a failed command left nothing behind. */
export function listing(dir: string): string[] {
  return readdirSync(dir).sort();
}

/** Asserts the psyops error contract: one line `psyops: … (CODE)` on stderr, no stack. */
export function errorLine(result: CliResult): { code: string; message: string } {
  const lines = result.stderr.trimEnd().split('\n');
  if (lines.length !== 1) throw new Error(`expected one stderr line, got:\n${result.stderr}`);
  const match = /^psyops: (.*) \(([A-Z_]+)\)$/.exec(lines[0]!);
  if (!match) throw new Error(`not a psyops error line: ${lines[0]}`);
  return { message: match[1]!, code: match[2]! };
}
