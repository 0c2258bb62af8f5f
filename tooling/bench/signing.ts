import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { readPublicKeyFile, readSecretKeyFile, signFile, verifyFile } from '@psyops/signing';
import { CLI, median, TIMEOUT_MS, timed } from './measure.ts';

const PEAK_PRELOAD = join(import.meta.dirname, 'report-peak-memory.cjs');

async function writeRandomFile(path: string, bytes: number): Promise<void> {
  const handle = await open(path, 'w');
  const chunk = randomBytes(1 << 20);
  for (let written = 0; written < bytes; written += chunk.length) {
    chunk[0] = written & 0xff; // vary the chunks a little; content does not matter for the hash's speed
    await handle.write(chunk, 0, Math.min(chunk.length, bytes - written));
  }
  await handle.sync(); // no write-back of a fresh gigabyte competing with the timed runs
  await handle.close();
}

/** Whether the built CLI finds libsodium (sodium-native) or falls back to node:crypto. */
async function cliPrehashBackend(): Promise<string> {
  const probe = `require(require('node:module').createRequire(${JSON.stringify(CLI)}).resolve('sodium-native'))`;
  const result = await execa('node', ['-e', probe], { reject: false, timeout: TIMEOUT_MS });
  return result.exitCode === 0 ? 'libsodium (sodium-native)' : 'node:crypto (sodium-native did not load: slower)';
}

async function elapsed(work: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/**
 * Signs and verifies one big file with the psyops CLI and with the real minisign, alternating
 * them round by round so machine noise hits both alike, and prints the median time ratio; also
 * the library alone in this process, which shows how much of the CLI's time is Node starting.
 */
export async function benchSigning(sizeMiB: number, rounds: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'psyops-bench-signing-'));
  try {
    const file = join(dir, 'big.bin');
    const peakFile = join(dir, 'peak.txt');
    writeFileSync(peakFile, '');
    await writeRandomFile(file, sizeMiB * 2 ** 20);
    await execa('node', [CLI, 'keygen', '-W', '-p', join(dir, 'k.pub'), '-s', join(dir, 'k.key')], { timeout: TIMEOUT_MS });
    const psyopsEnv = { NODE_OPTIONS: `--require ${PEAK_PRELOAD}`, PSYOPS_BENCH_PEAK_FILE: peakFile };
    const sign = { psyops: [] as number[], minisign: [] as number[], library: [] as number[] };
    const verify = { psyops: [] as number[], minisign: [] as number[], library: [] as number[] };
    const key = await readSecretKeyFile(join(dir, 'k.key'));
    const publicKey = await readPublicKeyFile(join(dir, 'k.pub'));
    let signature = '';
    const nodeStart: number[] = [];
    // An untimed round first: the page cache holds the file and both tools' code for every timed one.
    await timed('node', [CLI, 'sign', '-s', join(dir, 'k.key'), '-m', file, '-x', join(dir, 'p.minisig')]);
    await timed('minisign', ['-S', '-s', join(dir, 'k.key'), '-m', file, '-x', join(dir, 'm.minisig')]);
    for (let round = 0; round < rounds; round++) {
      sign.psyops.push(await timed('node', [CLI, 'sign', '-s', join(dir, 'k.key'), '-m', file, '-x', join(dir, 'p.minisig')], psyopsEnv));
      sign.minisign.push(await timed('minisign', ['-S', '-s', join(dir, 'k.key'), '-m', file, '-x', join(dir, 'm.minisig')]));
      verify.psyops.push(await timed('node', [CLI, 'verify', '-q', '-p', join(dir, 'k.pub'), '-m', file, '-x', join(dir, 'p.minisig')], psyopsEnv));
      verify.minisign.push(await timed('minisign', ['-V', '-q', '-p', join(dir, 'k.pub'), '-m', file, '-x', join(dir, 'm.minisig')]));
      nodeStart.push(await timed('node', ['-e', '0']));
      sign.library.push(await elapsed(async () => (signature = await signFile(file, key))));
      verify.library.push(await elapsed(() => verifyFile(file, publicKey, signature)));
    }
    const peakMiB = Math.max(...readFileSync(peakFile, 'utf8').trim().split('\n').map(Number)) / 1024;
    const line = (name: string, t: { psyops: number[]; minisign: number[]; library: number[] }) => {
      const ours = median(t.psyops);
      const theirs = median(t.minisign);
      const ratio = ours / theirs;
      const library = median(t.library);
      return (
        `  ${name.padEnd(7)} psyops ${ours.toFixed(2)} s   minisign ${theirs.toFixed(2)} s   ratio ${ratio.toFixed(2)}  (target <= 1.15${ratio <= 1.15 ? '' : ', MISSED'})\n` +
        `          @psyops/signing in this process ${library.toFixed(2)} s   ratio ${(library / theirs).toFixed(2)}`
      );
    };
    console.log(`signing: ${sizeMiB} MiB file, median of ${rounds} alternating rounds, whole commands (process start included)`);
    console.log(line('sign', sign));
    console.log(line('verify', verify));
    console.log(`  of which Node.js itself starting and stopping (node -e 0): ${median(nodeStart).toFixed(2)} s`);
    console.log(`  BLAKE2b backend of the CLI: ${await cliPrehashBackend()}`);
    console.log(`  psyops peak memory ${peakMiB.toFixed(0)} MiB (target <= 100 MiB${peakMiB <= 100 ? '' : ', MISSED'})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
