/** Shared by the end-to-end tests: the built CLI, a persistent default-image home, QEMU boots. */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NodeStatus } from '@psyops/nodeboot';
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

/** The reproducible release date of the default image every e2e test and benchmark builds (a stage-cache hit after the first). */
export const DEFAULT_IMAGE_EPOCH = '1764028800'; // 2025-11-25

/** `psyops build-iso` outside a workspace: the embedded default image (host kernel, busybox, Node.js, psyops-nodeboot). */
export async function buildDefaultImage(dir: string): Promise<{ iso: string; release: string; stderr: string }> {
  const run = await psyops(['build-iso', '--out', join(dir, 'out')], { cwd: dir, env: { SOURCE_DATE_EPOCH: DEFAULT_IMAGE_EPOCH } });
  expectSuccess(run, 'build-iso');
  const iso = run.stdout.split('\n')[0]!.trim();
  return { iso, release: /psyopsOS-(.+)-x86_64\.iso$/.exec(iso)![1]!, stderr: run.stderr };
}

export const E2E_NODE = { name: 'test-node-1', mac: '52:54:00:12:34:56', siteAddress: '10.0.2.100' } as const;

export interface NodeWorkspace {
  workspace: string;
  /** The ext4 image labelled psyops-secret, from `psyops node create`. */
  secretImage: string;
  /** The built site (`psyops site build`). */
  siteDir: string;
}

/**
 * A workspace that defines node test-node-1 as issue 7 describes it: psynet CA, `node create`
 * (secret image, site.url http://10.0.2.100), `config` as the node definition's config section,
 * and the site built from it. Every step is the real CLI.
 */
export async function createNodeWorkspace(dir: string, config: Record<string, unknown>): Promise<NodeWorkspace> {
  const workspace = join(dir, 'ws');
  const cli = async (args: string[]) => expectSuccess(await psyops(args, { cwd: workspace, timeoutMs: 120_000 }), `psyops ${args.join(' ')}`);
  expectSuccess(await psyops(['init', '--no-password', workspace], { cwd: dir, timeoutMs: 120_000 }), 'psyops init');
  await cli(['psynet', 'ca', 'init', '--name', 'psyops e2e']);
  const secretImage = join(dir, 'secret.img');
  await cli(['node', 'create', E2E_NODE.name, '--mac', E2E_NODE.mac, '--site-url', `http://${E2E_NODE.siteAddress}`, '--out', secretImage]);
  const definitionPath = join(workspace, 'nodes', `${E2E_NODE.name}.json`);
  const definition = JSON.parse(readFileSync(definitionPath, 'utf8'));
  writeFileSync(definitionPath, `${JSON.stringify({ ...definition, config }, null, 2)}\n`);
  const siteDir = join(dir, 'site');
  await cli(['site', 'build', '--out', siteDir]);
  return { workspace, secretImage, siteDir };
}

/** The console line that ends postboot, or the init's fatal one: a boot has done what it will do. */
export const POSTBOOT_FINISHED = /psyopsOS: postboot finished[^\n]*\n|psyops-init: FATAL[^\n]*\n/;

/** A free TCP port on the host's 127.0.0.1 (for a QEMU hostfwd). */
export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** The `psyopsOS: status {…}` line postboot --print-status writes on the serial console. */
export function statusFromSerial(serial: string): NodeStatus {
  const match = /psyopsOS: status (\{[^\r\n]*\})/.exec(serial);
  if (!match) throw new Error(`no "psyopsOS: status" line in the serial log; its end:\n${serial.slice(-4000)}`);
  return JSON.parse(match[1]!);
}
