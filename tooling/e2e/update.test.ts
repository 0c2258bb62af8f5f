import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { buildPackage, indexRepository, psyopsBaseSpec, readSigningKey } from '@psyops/apkpkg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUpdateWorld, NODE, type DiskNode, type UpdateWorld } from './disk-node.ts';
import { buildDefaultImage, DEFAULT_HOME, DEFAULT_IMAGE_EPOCH, psyops, expectSuccess, scratchDir } from './harness.ts';

// Issue 14, end to end (UEFI under TCG): a node booted from the A/B disk image (build-disk, its
// secret volume in the disk's psyops-secret partition) re-applies a new config without a reboot,
// upgrades a package from the site's repository, is updated to r2 by `psyops fleet update` (tried
// once in slot B, marked good), refuses a tampered r4 and a downgrade to r1 before writing
// anything, rolls back by itself from an r3 that panics at boot, and writes an ISO to a second
// disk with psyopsOS-write-bootmedia after verifying it (a tampered one is refused); that disk then boots.
const scratch = scratchDir('update');

let world: UpdateWorld;
let iso: string;
const blankDisk = join(scratch, 'bootmedia.img');
let diskImage: string;
let running: DiskNode | undefined;
let outs: Record<'r1' | 'r2' | 'r3' | 'r4', string>;
/** Where the serial output of the boot in use starts. */
let bootAt = 0;

/** Every file under `dir` whose name matches, depth first (the default home's stage folders have hashed names). */
function findFiles(dir: string, name: RegExp): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && name.test(entry.name))
    .map((entry) => join(entry.parentPath, entry.name));
}

/**
 * The workspace's APK repository (published by site build at apk/psyopsOS/) with psyopsOS-base one
 * release newer than the image's, signed with the key the default image trusts (its host repository's).
 */
async function publishNewerBase(): Promise<{ from: string; to: string }> {
  const installed = findFiles(DEFAULT_HOME, /^psyopsOS-base-.+\.apk$/).map((path) => basename(path).slice('psyopsOS-base-'.length, -'.apk'.length));
  const from = [...new Set(installed)].sort().at(-1)!;
  const to = from.replace(/-r(\d+)$/, (_, release: string) => `-r${Number(release) + 1}`);
  const keyFile = findFiles(join(DEFAULT_HOME, 'host-repo', 'keys'), /\.rsa$/)[0]!;
  const publicKeyName = `${basename(keyFile)}.pub`;
  const publicKeyPem = readFileSync(`${keyFile}.pub`, 'utf8');
  const spec = await psyopsBaseSpec({ version: to, arch: 'noarch', apkKeyName: publicKeyName, apkPublicKeyPem: publicKeyPem });
  const key = await readSigningKey(keyFile);
  const repo = join(world.node.workspace, 'apk');
  mkdirSync(join(repo, 'x86_64'), { recursive: true });
  const built = await buildPackage(spec, { sourceDateEpoch: Number(DEFAULT_IMAGE_EPOCH), key });
  writeFileSync(join(repo, 'x86_64', built.fileName), built.bytes);
  await indexRepository(repo, { sourceDateEpoch: Number(DEFAULT_IMAGE_EPOCH), key, description: 'e2e: a newer psyopsOS-base', arches: ['x86_64'] });
  // site build checks the repository against the workspace's trusted APK keys.
  mkdirSync(join(world.node.workspace, 'keys', 'apk'), { recursive: true });
  writeFileSync(join(world.node.workspace, 'keys', 'apk', publicKeyName), publicKeyPem);
  return { from, to };
}

const sshNode = (command: string) => world.ssh(running!.ports.ssh, command);
const fleet = (args: string[]) => world.fleet(running!.ports.ssh, args);

/** What an update could have touched on the node: the other slot's description and GRUB's environment (sha256 of each). */
async function slotsAndGrubenv(): Promise<string> {
  const look = await sshNode(
    'set -e; modprobe -q vfat || true; mkdir -p /run/e2e-a /run/e2e-esp; mount -o ro LABEL=psyopsOS-A /run/e2e-a; mount -t vfat -o ro LABEL=PSYOPS-ESP /run/e2e-esp; sha256sum /run/e2e-a/psyopsOS-slot.json /run/e2e-esp/boot/grub/grubenv; umount /run/e2e-a /run/e2e-esp',
  );
  expect(look.exitCode, look.stderr).toBe(0);
  return look.stdout;
}

beforeAll(async () => {
  world = await createUpdateWorld(scratch, { version: 1, files: [{ path: '/etc/motd', content: 'config version 1\n' }] });
  // The node trusts the workspace's key (its secret volume's): the ISO it writes is signed with it.
  iso = join(scratch, 'bootmedia.iso');
  copyFileSync((await buildDefaultImage(scratch)).iso, iso);
  expectSuccess(await psyops(['sign', '-m', iso], { cwd: world.node.workspace, timeoutMs: 120_000 }), 'psyops sign');
  // r1 carries the node's secret volume; r2 and r4 are good releases, r3 panics at boot (its own
  // kernel command line, read by GRUB from its slot, names an init that is not there).
  const r1 = await world.buildDisk('r1', ['--secret-image', world.node.secretImage]);
  outs = {
    r1,
    r2: await world.buildDisk('r2'),
    r3: await world.buildDisk('r3', ['--kernel-cmdline-append', 'rdinit=/nonexistent']),
    r4: await world.buildDisk('r4'),
  };
  world.stageUpdate(r1, 'r1');
  writeFileSync(blankDisk, '');
  truncateSync(blankDisk, statSync(iso).size + 64 * 1024 * 1024);
  await world.publish();
  diskImage = world.nodeDisk(r1);
}, 3_600_000);
afterAll(async () => {
  await running?.stop();
  await world?.close();
});

describe('updates of a node booted from the A/B disk image (QEMU, UEFI)', () => {
  it('boots r1 from slot A and applies a new config without a reboot', async () => {
    running = await world.boot(diskImage, 'disk', [{ file: blankDisk }, { file: iso, readOnly: true }]);
    const first = await running.nextBoot(0);
    bootAt = first.at;
    expect(first.status, first.line).toMatchObject({ status: 'ok', config: { version: 1 }, release: 'r1', slot: 'A', trial: false });
    expect(running.serial()).toMatch(/psyops-init: boot media \/dev\/vda4 label="psyopsOS-A" \(slot\)/);
    expect(running.serial()).toMatch(/psyopsOS: booted release=r1 /);

    const definitionPath = join(world.node.workspace, 'nodes', `${NODE}.json`);
    const definition = JSON.parse(readFileSync(definitionPath, 'utf8'));
    definition.config.version = 2;
    definition.config.files[0].content = 'config version 2\n';
    writeFileSync(definitionPath, `${JSON.stringify(definition, null, 2)}\n`);
    await world.publish();
    const bootId = await sshNode('cat /proc/sys/kernel/random/boot_id');
    const apply = await sshNode('psyops-node apply --json');
    expect(apply.exitCode, `${apply.stderr}\n${apply.stdout}`).toBe(0);
    expect(JSON.parse(apply.stdout)).toMatchObject({ action: 'applied', from: 1, to: 2 });
    const motd = await sshNode('cat /etc/motd; cat /proc/sys/kernel/random/boot_id');
    expect(motd.stdout).toBe(`config version 2\n${bootId.stdout}`);
  });

  it("upgrade takes a newer psyopsOS-base from the site's repository, and apk's database says so", async () => {
    const { from, to } = await publishNewerBase();
    await world.publish();
    const upgrade = await sshNode('psyops-node upgrade --json');
    expect(upgrade.exitCode, `${upgrade.stderr}\n${upgrade.stdout}`).toBe(0);
    expect(JSON.parse(upgrade.stdout)).toMatchObject({ upgraded: [{ name: 'psyopsOS-base', from, to }] });
    const db = await sshNode("awk '/^P:psyopsOS-base$/ { getline; print }' /lib/apk/db/installed");
    expect(db.stdout.trim()).toBe(`V:${to}`);
    const again = await sshNode('psyops-node upgrade --json');
    expect(JSON.parse(again.stdout)).toMatchObject({ upgraded: [] });
  });

  it('fleet update takes the node to r2: written to slot B, tried once, marked good', async () => {
    world.stageUpdate(outs.r2, 'r2');
    await world.publish();
    const began = Date.now();
    const update = await fleet(['update', NODE, '--to', 'r2']);
    expect(update.exitCode, `${update.stderr}\n${update.stdout}`).toBe(0);
    console.log(`update: psyops fleet update to r2 running took ${((Date.now() - began) / 1000).toFixed(1)} s`);
    const result = JSON.parse(update.stdout);
    expect(result).toMatchObject({
      ok: true,
      nodes: [{ node: NODE, outcome: 'updated', before: { release: 'r1', slot: 'A' }, after: { release: 'r2', slot: 'B', status: 'ok' } }],
    });
    const booted = await running!.nextBoot(bootAt);
    bootAt = booted.at;
    expect(booted.status).toMatchObject({ status: 'ok', release: 'r2', slot: 'B', trial: true });
    expect(running!.serial().slice(0, booted.at)).toMatch(/psyopsOS: booting slot B psyopsos\.trial=1/);
    expect(running!.serial().slice(0, booted.at)).toMatch(/nodeboot: slot B marked good \(r2\)/);
    const status = await fleet(['status', NODE]);
    expect(status.exitCode, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).nodes[0]).toMatchObject({ reachable: true, release: 'r2', slot: 'B', status: 'ok', rollback: null });
  });

  it('a tampered r4 and a downgrade to r1 are refused before anything is written', async () => {
    world.stageUpdate(outs.r4, 'r4');
    await world.publish();
    // The site's r4 tar changed after site build signed it: its signature no longer matches.
    const tar = join(world.node.siteDir, 'os', 'psyopsOS-r4-x86_64.tar');
    const bytes = readFileSync(tar);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 4096) ^ 0xff, bytes.length - 4096);
    writeFileSync(tar, bytes);
    const before = await slotsAndGrubenv();
    const tampered = await sshNode('psyops-node update --version r4');
    expect(tampered.exitCode, tampered.stdout).toBe(1);
    expect(tampered.stderr).toMatch(/psyopsOS-r4-x86_64\.tar: .*(BAD_SIGNATURE)/);
    const downgrade = await sshNode('psyops-node update --version r1');
    expect(downgrade.exitCode, downgrade.stdout).toBe(1);
    expect(downgrade.stderr).toMatch(/r1 is older than the running r2 .*DOWNGRADE_REFUSED/);
    const viaFleet = await fleet(['update', NODE, '--to', 'r4']);
    expect(viaFleet.exitCode).not.toBe(0);
    expect(JSON.parse(viaFleet.stdout).nodes[0]).toMatchObject({ outcome: 'failed', reason: expect.stringMatching(/BAD_SIGNATURE/) });
    expect(await slotsAndGrubenv()).toBe(before);
    rmSync(join(world.imagesDir, 'psyopsOS-r4-x86_64.tar'));
  });

  it('r3 panics at boot: tried once, and the node comes back on r2 by itself, saying it rolled back', async () => {
    world.stageUpdate(outs.r3, 'r3');
    await world.publish();
    const began = Date.now();
    const update = await fleet(['update', NODE, '--to', 'r3']);
    console.log(`update: psyops fleet update to r3 and back on r2 took ${((Date.now() - began) / 1000).toFixed(1)} s`);
    expect(update.exitCode, update.stderr).not.toBe(0);
    expect(update.stderr).toMatch(/rolled back from r3 \(slot A\) to r2/);
    expect(JSON.parse(update.stdout).nodes[0]).toMatchObject({
      outcome: 'failed',
      after: { release: 'r2', slot: 'B' },
      rollback: { slot: 'A', version: 'r3' },
    });
    const booted = await running!.nextBoot(bootAt);
    const serial = running!.serial().slice(bootAt, booted.at);
    bootAt = booted.at;
    expect(serial).toMatch(/psyopsOS: booting slot A psyopsos\.trial=1/);
    expect(serial).toMatch(/Kernel panic/);
    expect(serial).toMatch(/psyopsOS: booting slot B psyopsos\.rolled_back_from=A/);
    expect(booted.line).toMatch(/status=ok .* rolled-back-from=r3$/);
    expect(booted.status).toMatchObject({ status: 'ok', release: 'r2', slot: 'B', trial: false, rollback: { slot: 'A', version: 'r3' } });
  });

  it('writes the ISO to a second disk with psyopsOS-write-bootmedia after verifying it; a tampered ISO is refused', async () => {
    const size = statSync(iso).size;
    // The ISO reaches the guest as its third disk (/dev/vdc), its signature over SSH.
    const signature = readFileSync(`${iso}.minisig`).toString('base64');
    const copy = await sshNode(`head -c ${size} /dev/vdc > /tmp/boot.iso && echo ${signature} | base64 -d > /tmp/boot.iso.minisig`);
    expect(copy.exitCode, copy.stderr).toBe(0);
    const tampered = await sshNode(
      'cp /tmp/boot.iso /tmp/bad.iso && cp /tmp/boot.iso.minisig /tmp/bad.iso.minisig && printf x | dd of=/tmp/bad.iso bs=1 seek=40000 conv=notrunc 2>/dev/null && psyopsOS-write-bootmedia /tmp/bad.iso /dev/vdb; echo "exit $?"; head -c 4 /dev/vdb | od -An -tx1',
    );
    expect(tampered.stdout, tampered.stderr).toMatch(/exit 1/);
    expect(tampered.stdout).toMatch(/00 00 00 00/);
    const written = await sshNode('rm /tmp/bad.iso*; psyopsOS-write-bootmedia /tmp/boot.iso /dev/vdb');
    expect(written.exitCode, `${written.stderr}\n${written.stdout}`).toBe(0);
  });

  it('the disk written by psyopsOS-write-bootmedia boots', async () => {
    await running?.stop();
    running = undefined;
    const media = await world.boot(blankDisk, 'bootmedia');
    try {
      const booted = await media.nextBoot(0);
      expect(booted.line).toMatch(/postboot finished/);
      // The hybrid ISO's ISO 9660 volume is seen through its first partition.
      expect(media.serial()).toMatch(/psyops-init: boot media \/dev\/vda\d* label="psyopsos-boot /);
    } finally {
      await media.stop();
    }
  });
});
