import { mkdtemp, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createUpdateWorld, type DiskNode, type UpdateWorld } from '../e2e/disk-node.ts';
import { SITE_ADDRESS } from '../e2e/psynet-nodes.ts';
import { median } from './measure.ts';

/** The target: `psyops-node update` (fetch, verify, write the slot) at most this many times wget + minisign -V + dd of the same bytes. */
const TARGET_RATIO = 1.3;
const SECRET_MOUNT = '/mnt/psyops-secret/mount';
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Seconds a shell command takes on the guest, by the guest's own clock (/proc/uptime), so SSH's overhead is not in it. */
async function guestSeconds(world: UpdateWorld, node: DiskNode, command: string): Promise<number> {
  const run = await world.ssh(
    node.ports.ssh,
    `a=$(cut -d' ' -f1 /proc/uptime); (${command}) >/dev/null || exit 1; b=$(cut -d' ' -f1 /proc/uptime); echo "$a $b"`,
    1_800_000,
  );
  if (run.exitCode !== 0) throw new Error(`update bench: \`${command}\` failed on the guest: ${run.stderr.trim().split('\n').at(-1)}`);
  const [a, b] = run.stdout.trim().split(' ').map(Number);
  return b! - a!;
}

/**
 * `psyops-node update` on a node booted from the A/B disk (UEFI, TCG) against the same work done
 * by hand on the same guest: wget of the tar and its signature, `minisign -V`, `dd conv=fsync` onto
 * a disk as large as the tar. Then QEMU seconds from `update --reboot` to running r2, and from
 * GRUB booting the broken r3 to running r2 again, against the node's first (cold) boot.
 */
export async function benchUpdate(rounds = 3): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'psyops-bench-update-'));
  let node: DiskNode | undefined;
  let world: UpdateWorld | undefined;
  try {
    world = await createUpdateWorld(dir, { version: 1, files: [{ path: '/etc/motd', content: 'update benchmark node\n' }] });
    const r1 = await world.buildDisk('r1', ['--secret-image', world.node.secretImage]);
    const r2 = await world.buildDisk('r2');
    const r3 = await world.buildDisk('r3', ['--kernel-cmdline-append', 'rdinit=/nonexistent']);
    world.stageUpdate(r2, 'r2');
    world.stageUpdate(r3, 'r3');
    await world.publish();
    const tar = 'psyopsOS-r2-x86_64.tar';
    const bytes = (await stat(join(r2, tar))).size;
    const ddTarget = join(dir, 'dd-target.img');
    await writeFile(ddTarget, '');
    await truncate(ddTarget, bytes + 16 * 2 ** 20);

    const started = performance.now();
    node = await world.boot(world.nodeDisk(r1), 'bench', [{ file: ddTarget }]);
    let boot = await node.nextBoot(0);
    const coldBoot = performance.now() - started;

    const url = `http://${SITE_ADDRESS}/os/${tar}`;
    const reference = `wget -q -O /tmp/ref.tar ${url} && wget -q -O /tmp/ref.tar.minisig ${url}.minisig && minisign -Vq -p ${SECRET_MOUNT}/minisign.pubkey -m /tmp/ref.tar && dd if=/tmp/ref.tar of=/dev/vdb bs=1M conv=fsync 2>/dev/null; s=$?; rm -f /tmp/ref.tar /tmp/ref.tar.minisig; exit $s`;
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let round = 0; round < rounds; round++) {
      theirs.push(await guestSeconds(world, node, reference));
      ours.push(await guestSeconds(world, node, 'psyops-node update --version r2'));
    }
    const ratio = median(ours) / median(theirs);
    console.log(
      `update apply on the node (${(bytes / 2 ** 20).toFixed(0)} MiB tar, TCG, median of ${rounds}, guest clock): psyops-node update ${median(ours).toFixed(1)} s; ` +
        `wget + minisign -V + dd conv=fsync of the same bytes ${median(theirs).toFixed(1)} s; ratio ${ratio.toFixed(2)} (target <= ${TARGET_RATIO})`,
    );

    const toR2 = performance.now();
    const updated = await world.ssh(node.ports.ssh, 'psyops-node update --version r2 --reboot');
    if (updated.exitCode !== 0 && updated.exitCode !== 255) throw new Error(`update bench: update to r2: ${updated.stderr.trim()}`);
    boot = await node.nextBoot(boot.at);
    if (boot.status.release !== 'r2' || boot.status.status !== 'ok') throw new Error(`update bench: came back as ${boot.line}`);
    const updateToR2 = performance.now() - toR2;

    const toR3 = performance.now();
    const broken = await world.ssh(node.ports.ssh, 'psyops-node update --version r3 --reboot');
    if (broken.exitCode !== 0 && broken.exitCode !== 255) throw new Error(`update bench: update to r3: ${broken.stderr.trim()}`);
    const tried = await node.waitFor(/psyopsOS: booting slot A psyopsos\.trial=1/g, boot.at);
    const trialSeen = performance.now();
    boot = await node.nextBoot(tried.at);
    if (boot.status.release !== 'r2' || !boot.status.rollback) throw new Error(`update bench: after r3 came back as ${boot.line}`);
    const backOnR2 = performance.now();
    console.log(
      `update QEMU seconds (TCG, UEFI): update --reboot to running r2 ${seconds(updateToR2)} (${(updateToR2 / coldBoot).toFixed(2)}x the cold boot's ${seconds(coldBoot)}); ` +
        `GRUB booting the broken r3 to running r2 again ${seconds(backOnR2 - trialSeen)} (${((backOnR2 - trialSeen) / coldBoot).toFixed(2)}x); update to r3 until back on r2 ${seconds(backOnR2 - toR3)}`,
    );
  } finally {
    await node?.stop();
    await world?.close();
    await rm(dir, { recursive: true, force: true });
  }
}
