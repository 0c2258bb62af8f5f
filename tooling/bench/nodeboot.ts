import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { bootInQemu } from '@psyops/imagebuild';
import { writeStateImage } from '@psyops/nodeboot';
import { serveSite } from '@psyops/siteapi';
import { buildDefaultImage, createNodeWorkspace, E2E_NODE, POSTBOOT_FINISHED, statusFromSerial } from '../e2e/harness.ts';
import { median } from './measure.ts';

const BOOT_TIMEOUT_MS = 10 * 60_000;
/** The target: boot to configured, sshd and nebula running, at most this many times the minimal image's boot to userspace. */
const TARGET_RATIO = 1.6;
/** The embedded default image boots the host's Debian kernel: flavor debian. */
const DEFAULT_IMAGE_INITRAMFS = '/boot/initramfs-debian';
const MINIMAL_LINE = 'psyops-bench: minimal image in userspace';

/** Serial lines whose arrival splits the boot into phases (host clock, from QEMU start). */
const MILESTONES: [string, RegExp][] = [
  ['media found', /psyops-init: boot media /],
  ['root mounted', /psyops-init: root: /],
  ['switch_root', /psyops-init: switching root/],
  ['boot hook', /psyopsOS: booted /],
  ['postboot started', /nodeboot: postboot started/],
  ['configured', /psyopsOS: postboot finished status=(?:ok|degraded)/],
];

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

interface BootTiming {
  /** Milestone → ms since QEMU start. */
  at: Map<string, number>;
  startupMs: number;
  postbootMs: number;
  steps: string;
}

async function timedBoot(options: { iso: string; uefi: boolean; secretImage: string; stateImage: string; sitePort: number }): Promise<BootTiming> {
  const at = new Map<string, number>();
  let seen = '';
  const started = performance.now();
  const result = await bootInQemu({
    iso: options.iso,
    uefi: options.uefi,
    secretImage: options.secretImage,
    drives: [{ file: options.stateImage }],
    network: { forwards: [{ guestAddress: E2E_NODE.siteAddress, guestPort: 80, hostPort: options.sitePort }], mac: E2E_NODE.mac },
    timeoutMs: BOOT_TIMEOUT_MS,
    until: POSTBOOT_FINISHED,
    onSerial: (text) => {
      seen += text;
      const now = performance.now() - started;
      for (const [name, pattern] of MILESTONES) if (!at.has(name) && pattern.test(seen)) at.set(name, now);
    },
  });
  if (!at.has('configured')) throw new Error(`nodeboot bench: the node was not configured (${result.reason}); serial log end:\n${result.serial.slice(-3000)}`);
  const status = statusFromSerial(result.serial);
  return {
    at,
    startupMs: status.startupMs ?? 0,
    postbootMs: status.durationMs,
    steps: status.steps.map((step) => `${step.name} ${seconds(step.ms)}`).join(', '),
  };
}

/**
 * The reference: the default image with its initramfs replaced by a static busybox whose /init
 * prints one line and powers off — the same boot loaders, kernel and command line, so it measures
 * what any image on this kernel pays before its first userspace line, on this machine, now.
 */
async function minimalImage(dir: string, iso: string): Promise<string> {
  const root = join(dir, 'minimal-root');
  await mkdir(join(root, 'bin'), { recursive: true });
  await copyFile('/bin/busybox', join(root, 'bin', 'busybox'));
  await writeFile(join(root, 'init'), `#!/bin/busybox sh\n/bin/busybox echo "${MINIMAL_LINE}"\n/bin/busybox poweroff -f\n`);
  await chmod(join(root, 'init'), 0o755);
  const cpio = await execa('cpio', ['--quiet', '-o', '-H', 'newc'], { cwd: root, input: '.\nbin\nbin/busybox\ninit\n', encoding: 'buffer', timeout: 60_000 });
  const initramfs = join(dir, 'minimal-initramfs');
  await writeFile(initramfs, gzipSync(cpio.stdout));
  const out = join(dir, 'minimal.iso');
  await execa('xorriso', ['-indev', iso, '-outdev', out, '-boot_image', 'any', 'replay', '-map', initramfs, DEFAULT_IMAGE_INITRAMFS], { timeout: 120_000 });
  return out;
}

async function minimalBoot(iso: string, uefi: boolean): Promise<number> {
  const result = await bootInQemu({ iso, uefi, timeoutMs: BOOT_TIMEOUT_MS, until: new RegExp(MINIMAL_LINE) });
  if (result.reason === 'timeout') throw new Error(`nodeboot bench: the minimal image did not reach userspace; serial log end:\n${result.serial.slice(-2000)}`);
  return result.durationMs;
}

/**
 * The default image with test-node-1's secret volume (USB), a state disk and the site (as the e2e
 * test sets them up), booted under TCG with BIOS and UEFI: seconds from QEMU start to
 * `postboot finished status=ok|degraded`, split at the boot's console milestones, and nodeboot's
 * own share (node start-up and bundle loading, then each postboot step). Each boot alternates with
 * one of the minimal reference image, and the ratio of the medians is what this machine's speed
 * cannot change (target: 1.6).
 */
export async function benchNodeboot(rounds = 1): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'psyops-bench-nodeboot-'));
  try {
    const { iso } = await buildDefaultImage(dir);
    const reference = await minimalImage(dir, iso);
    const node = await createNodeWorkspace(dir, {
      version: 1,
      hostname: E2E_NODE.name,
      files: [{ path: '/etc/motd', content: 'benchmark node\n' }],
    });
    const server = await serveSite({ root: node.siteDir });
    try {
      const stateImage = join(dir, 'state.img');
      await writeStateImage(stateImage);
      for (const uefi of [false, true]) {
        const boots: BootTiming[] = [];
        const minimal: number[] = [];
        for (let round = 0; round < rounds; round++) {
          minimal.push(await minimalBoot(reference, uefi));
          boots.push(await timedBoot({ iso, uefi, secretImage: node.secretImage, stateImage, sitePort: server.port }));
        }
        const phase = (name: string) => median(boots.map((boot) => boot.at.get(name) ?? Number.NaN));
        const milestones = MILESTONES.map(([name]) => `${name} ${seconds(phase(name))}`).join(', ');
        const last = boots.at(-1)!;
        const configured = phase('configured');
        const userspace = median(minimal);
        console.log(
          `nodeboot ${uefi ? 'UEFI' : 'BIOS'} QEMU start to configured (TCG, median of ${rounds}): ${seconds(configured)}; ` +
            `minimal image on the same kernel to userspace: ${seconds(userspace)}; ratio ${(configured / userspace).toFixed(2)} (target <= ${TARGET_RATIO}); ` +
            `milestones from QEMU start: ${milestones}; ` +
            `nodeboot's share: node start-up and bundle ${seconds(median(boots.map((b) => b.startupMs)))}, postboot ${seconds(median(boots.map((b) => b.postbootMs)))} (last boot's steps: ${last.steps})`,
        );
      }
    } finally {
      await server.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// Run alone: `npx tsx bench/nodeboot.ts [rounds]` from tooling/.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await benchNodeboot(Number(process.argv[2] ?? 1));
