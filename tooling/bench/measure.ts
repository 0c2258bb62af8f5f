import { join } from 'node:path';
import { execa } from 'execa';

/** The built CLI, as users run it. */
export const CLI = join(import.meta.dirname, '..', '..', 'packages', 'cli', 'dist', 'cli.js');
export const TIMEOUT_MS = 10 * 60_000;

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Seconds one whole command takes (its output discarded), bounded by TIMEOUT_MS. */
export async function timed(command: string, args: string[], env: Record<string, string> = {}): Promise<number> {
  const start = process.hrtime.bigint();
  await execa(command, args, { env, timeout: TIMEOUT_MS, stdout: 'ignore' });
  return Number(process.hrtime.bigint() - start) / 1e9;
}
