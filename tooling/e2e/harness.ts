/** Shared by the end-to-end tests: the built CLI, a persistent default-image home, QEMU boots. */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll } from 'vitest';

export const REPO = join(import.meta.dirname, '..', '..');
export const CLI = join(REPO, 'packages', 'cli', 'dist', 'cli.js');
/**
 * The embedded default's home (host APK repository, package and stage caches) is kept between
 * runs, under the checkout's .cache, like a build cache: the first run builds it, later runs reuse it.
 */
export const DEFAULT_HOME = join(REPO, '.cache', 'e2e-default-image');
mkdirSync(DEFAULT_HOME, { recursive: true });

/** A scratch directory for this test file, removed when the file ends. */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `psyops-e2e-${prefix}-`));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface CliRun {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI with a clean environment (no workspace leaking in). */
export async function psyops(args: string[], options: { cwd: string; env?: Record<string, string | undefined>; timeoutMs?: number }): Promise<CliRun> {
  const result = await execa('node', [CLI, ...args], {
    cwd: options.cwd,
    env: { PSYOPS_WORKSPACE: undefined, PSYOPS_MINISIGN_PASSWORD: undefined, SOURCE_DATE_EPOCH: undefined, PSYOPS_DEFAULT_HOME: DEFAULT_HOME, ...options.env },
    input: '',
    reject: false,
    timeout: options.timeoutMs ?? 1_200_000,
  });
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

/** Fails with the command's own output, so a CI log shows why. */
export function expectSuccess(run: CliRun, what: string): void {
  if (run.exitCode !== 0) throw new Error(`${what} failed (exit ${run.exitCode}):\n${run.stderr}\n${run.stdout}`);
}

/** Lines of a serial log without the carriage returns the console adds. */
export const serialLines = (serial: string): string[] => serial.replaceAll('\r', '').split('\n');
