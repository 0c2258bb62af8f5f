import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { allocateHost, DEFAULT_PLAN, initCa, psynetFiles, resolvePlan, signHost, updateRegistry } from '@psyops/psynet';

const CLI = join(import.meta.dirname, '..', '..', 'packages', 'cli', 'dist', 'cli.js');
const TIMEOUT_MS = 60_000;

const elapsed = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;

/**
 * Allocates and signs `count` node certificates with psyops (the library: locked registry
 * read-modify-write, Ed25519 signature, X25519 key pair, atomic writes of cert, key and registry)
 * and signs as many with the real `nebula-cert sign` (one process per certificate, as an operator
 * runs it), in the same run; prints the time per certificate of each and the ratio. A sample of
 * whole `psyops psynet allocate` + `sign` command pairs shows the cost with Node's start-up.
 */
export async function benchPsynet(count: number, cliSample: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'psyops-bench-psynet-'));
  try {
    writeFileSync(join(dir, 'psyops.config.json'), '{}\n'); // a workspace with every default, for the CLI sample
    const files = psynetFiles(join(dir, 'psynet'));
    const plan = resolvePlan(DEFAULT_PLAN);
    const now = Math.floor(Date.now() / 1000);
    await initCa(files, { name: 'bench CA', durationSeconds: 8760 * 3600, now, network: plan.network });

    const libraryStart = process.hrtime.bigint();
    for (let i = 0; i < count; i++) {
      const name = `node${i}`;
      await updateRegistry(files.registry, (registry) => allocateHost(registry, plan, { name, role: 'node', created: '2026-01-01T00:00:00Z' }));
      await signHost(files, plan, { name, now });
    }
    const libraryMs = elapsed(libraryStart) / count;

    const nebulaDir = join(dir, 'nebula');
    mkdirSync(nebulaDir);
    const nebulaStart = process.hrtime.bigint();
    for (let i = 0; i < count; i++) {
      const ip = `10.10.10.${(i % 250) + 1}/22`; // nebula-cert keeps no registry: any address will do
      await execa(
        'nebula-cert',
        [
          'sign',
          '-ca-crt',
          files.caCert,
          '-ca-key',
          files.caKey,
          '-name',
          `node${i}`,
          '-ip',
          ip,
          '-groups',
          'psyopsOS',
          '-out-crt',
          join(nebulaDir, `node${i}.crt`),
          '-out-key',
          join(nebulaDir, `node${i}.key`),
        ],
        { timeout: TIMEOUT_MS },
      );
    }
    const nebulaMs = elapsed(nebulaStart) / count;

    const cliStart = process.hrtime.bigint();
    // The node pool holds 509 addresses and the library run took 500: the sample goes to the client pool.
    for (let i = 0; i < cliSample; i++) {
      const env = { PSYOPS_WORKSPACE: undefined };
      const ws = ['--workspace', dir];
      await execa('node', [CLI, ...ws, 'psynet', 'allocate', `cli${i}`, '--role', 'client'], { timeout: TIMEOUT_MS, env, stdout: 'ignore' });
      await execa('node', [CLI, ...ws, 'psynet', 'sign', `cli${i}`], { timeout: TIMEOUT_MS, env, stdout: 'ignore' });
    }
    const cliMs = cliSample > 0 ? elapsed(cliStart) / cliSample : Number.NaN;

    console.log(`psynet: allocate + sign ${count} node certificates, time per certificate`);
    console.log(`  psyops library      ${libraryMs.toFixed(2)} ms   nebula-cert sign ${nebulaMs.toFixed(2)} ms   ratio ${(libraryMs / nebulaMs).toFixed(2)}`);
    console.log('  (psyops also allocates, locks and fsyncs registry, certificate and key; nebula-cert writes two files without fsync)');
    if (cliSample > 0) {
      console.log(
        `  psyops CLI (allocate + sign commands, ${cliSample} hosts, Node start-up included) ${cliMs.toFixed(2)} ms   ratio ${(cliMs / nebulaMs).toFixed(2)}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
