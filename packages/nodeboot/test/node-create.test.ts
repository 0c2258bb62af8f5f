import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { allocateHost, initCa, psynetFiles, releaseHost, resolvePlan, updateRegistry } from '@psyops/psynet';
import { encodePublicKey, generateKeyPair } from '@psyops/signing';
import { createNode, readNodeLighthouses, sshKeyFingerprint, type CreateNodeOptions } from '../src/node-create.js';
import { tempDir } from './fixtures.js';

const run = promisify(execFile);
const statMode = (path: string) => statSync(path).mode & 0o777;
const MAC = '52:54:00:12:34:56';
// A node pool of three addresses (.1 to .3), so that a released address is the only one left.
const PLAN = { network: '10.10.8.0/22', pools: { lighthouse: '10.10.8.0/24', client: '10.10.9.0/24', node: '10.10.10.0/30' } };

// A mkfs.ext4 first on PATH (found once per process, so one script does both): by default it fails, a secret
// image that cannot be written after its certificate was signed (folders, kind 'dir', need no mkfs). With
// FAKE_MKFS=watch it runs the real one, recording in $FAKE_MKFS_LOG the mode of the image, of the directory
// holding it and of everything mkfs -d copies, before and after; then, with FAKE_MKFS_SLEEP, it says so in
// $FAKE_MKFS_LOG.running and sleeps (the image complete, not yet renamed into place).
const REAL_MKFS = ['/usr/sbin/mkfs.ext4', '/sbin/mkfs.ext4'].find((path) => existsSync(path)) ?? 'mkfs.ext4';
const fakeBin = tempDir('fake-mkfs');
writeFileSync(
  join(fakeBin, 'mkfs.ext4'),
  `#!/bin/sh
if [ "$FAKE_MKFS" != watch ]; then echo "mkfs.ext4: no space left on device" >&2; exit 1; fi
prev= image= content=
for arg; do [ "$prev" = -d ] && content=$arg; image=$prev; prev=$arg; done
snap() {
  echo "== $1"
  stat -c '%a %F %n' "$(dirname "$image")" "$image" 2>&1
  [ -z "$content" ] || find "$content" -exec stat -c '%a %F %n' {} +
}
snap before >> "$FAKE_MKFS_LOG"
${REAL_MKFS} "$@" || exit $?
snap after >> "$FAKE_MKFS_LOG"
[ -z "$FAKE_MKFS_SLEEP" ] || { touch "$FAKE_MKFS_LOG.running"; exec sleep "$FAKE_MKFS_SLEEP"; }
`,
  { mode: 0o755 },
);
process.env.PATH = `${fakeBin}:${process.env.PATH}`;

/** The volume's private files: 0600 wherever they are. */
const PRIVATE_FILES = ['nodename', 'age.key', 'ssh_host_ed25519_key', 'psynet.host.key', 'TESTONLYNOPROD.env'];

/** Everything under `dir` (relative path → every mode it was seen with), sampled until `until` settles: what another user could have caught. */
async function watchModes(dir: string, until: Promise<unknown>): Promise<Map<string, Set<string>>> {
  const seen = new Map<string, Set<string>>();
  let done = false;
  const settled = until.then(
    () => (done = true),
    () => (done = true),
  );
  const walk = async (at: string): Promise<void> => {
    const names = await readdir(at).catch(() => [] as string[]);
    for (const name of names) {
      const path = join(at, name);
      const info = await lstat(path).catch(() => undefined);
      if (!info) continue;
      const modes = seen.get(relative(dir, path)) ?? new Set<string>();
      modes.add(`${info.isDirectory() ? 'd' : 'f'}${(info.mode & 0o777).toString(8)}`);
      seen.set(relative(dir, path), modes);
      if (info.isDirectory()) await walk(path);
    }
  };
  while (!done) {
    await walk(dir);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  await settled;
  return seen;
}

/** Runs `work` under `mask`, then restores the umask (vitest runs this file in a child process: umask applies). */
async function withUmask<T>(mask: number, work: () => Promise<T>): Promise<T> {
  const previous = process.umask(mask);
  try {
    return await work();
  } finally {
    process.umask(previous);
  }
}

/** Runs `work` with the watching mkfs.ext4 (FAKE_MKFS=watch), its log in `log`. */
async function withWatchingMkfs<T>(log: string, sleepSeconds: number | undefined, work: () => Promise<T>): Promise<T> {
  const saved = { FAKE_MKFS: process.env.FAKE_MKFS, FAKE_MKFS_LOG: process.env.FAKE_MKFS_LOG, FAKE_MKFS_SLEEP: process.env.FAKE_MKFS_SLEEP };
  Object.assign(process.env, { FAKE_MKFS: 'watch', FAKE_MKFS_LOG: log, FAKE_MKFS_SLEEP: sleepSeconds === undefined ? '' : String(sleepSeconds) });
  try {
    return await work();
  } finally {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

describe('createNode', () => {
  const work = tempDir('node-create');
  const psynet = { dir: join(work, 'psynet'), plan: PLAN };
  const files = psynetFiles(psynet.dir);
  const nodesDir = join(work, 'nodes');
  const options = (name: string, output: CreateNodeOptions['output'], extra: Partial<CreateNodeOptions> = {}): CreateNodeOptions => ({
    name,
    mac: MAC,
    output,
    minisignPublicKeyFile: join(work, 'minisign.pub'),
    psynet,
    nodesDir,
    ...extra,
  });
  const registry = () => readFileSync(files.registry, 'utf8');

  beforeAll(async () => {
    mkdirSync(nodesDir);
    writeFileSync(join(work, 'minisign.pub'), encodePublicKey(generateKeyPair()));
    await initCa(files, { name: 'psyops test', durationSeconds: 86_400, now: Math.floor(Date.now() / 1000), network: resolvePlan(PLAN).network });
  });

  it('refuses an existing node without rekey, and with rekey keeps its address and reports what it replaced', async () => {
    const first = await createNode(options('n1', { kind: 'dir', path: join(work, 'n1') }));
    expect(first.replaced).toBeUndefined();
    expect(first.sshHostKeyFingerprint).toBe(sshKeyFingerprint(first.sshHostPublicKey));
    const before = registry();
    await expect(createNode(options('n1', { kind: 'dir', path: join(work, 'n1-again') }))).rejects.toMatchObject({ code: 'NODE_EXISTS' });
    await expect(createNode(options('n1', { kind: 'dir', path: join(work, 'n1') }, { force: true }))).rejects.toMatchObject({ code: 'NODE_EXISTS' });
    expect(registry()).toBe(before);
    expect(existsSync(join(work, 'n1-again'))).toBe(false);

    const second = await createNode(options('n1', { kind: 'dir', path: join(work, 'n1-again') }, { rekey: true }));
    expect(second.psynetAddress).toBe(first.psynetAddress);
    expect(second.replaced).toEqual({
      ageRecipient: first.ageRecipient,
      sshHostPublicKey: first.sshHostPublicKey,
      sshHostKeyFingerprint: first.sshHostKeyFingerprint,
      certificateFingerprint: first.certificateFingerprint,
      certificateNotAfter: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      psynetAddress: first.psynetAddress,
    });
    expect(second.certificateFingerprint).not.toBe(first.certificateFingerprint);
    expect(JSON.parse(registry()).hosts.find((h: { name: string }) => h.name === 'n1').certificate.fingerprint).toBe(second.certificateFingerprint);

    // The fingerprint is the one the real ssh-keygen prints.
    writeFileSync(join(work, 'n1.pub'), `${second.sshHostPublicKey}\n`);
    const { stdout } = await run('ssh-keygen', ['-l', '-f', join(work, 'n1.pub')], { timeout: 30_000 });
    expect(stdout.split(' ')[1]).toBe(second.sshHostKeyFingerprint);
  });

  it('a volume that cannot be written gives a released address back to the released list, byte for byte', async () => {
    await updateRegistry(files.registry, (r) => {
      const plan = resolvePlan(PLAN);
      allocateHost(r, plan, { name: 'n2', role: 'node', created: '2025-01-01T00:00:00Z' });
      allocateHost(r, plan, { name: 'n3', role: 'node', created: '2025-01-01T00:00:00Z' });
      releaseHost(r, 'n2');
    });
    const before = registry();
    expect(JSON.parse(before).released).toEqual(['10.10.10.2']);
    const hosts = readdirSync(files.hostsDir).sort();
    await expect(createNode(options('n4', { kind: 'image', path: join(work, 'n4.img') }))).rejects.toMatchObject({ code: 'TOOL_FAILED' });
    expect(registry()).toBe(before);
    expect(readdirSync(files.hostsDir).sort()).toEqual(hosts);
    expect(existsSync(join(nodesDir, 'n4.json'))).toBe(false);
    expect(readdirSync(work).filter((name) => name.includes('n4'))).toEqual([]);

    // The same address is then given to the node once its volume can be written.
    const made = await createNode(options('n4', { kind: 'dir', path: join(work, 'n4') }));
    expect(made.psynetAddress).toBe('10.10.10.2');
  });

  it('a lighthouse: address from the lighthouse pool, certificate in its group, underlay recorded; kept by rekey', async () => {
    const definitionOf = (name: string) => JSON.parse(readFileSync(join(nodesDir, `${name}.json`), 'utf8'));
    const made = await createNode(
      options('lh-a', { kind: 'dir', path: join(work, 'lh-a') }, { lighthouse: { underlay: ['192.168.77.1:4242', '[2001:db8::1]:4242'] } }),
    );
    expect(made).toMatchObject({ role: 'lighthouse', psynetAddress: '10.10.8.1', underlay: ['192.168.77.1:4242', '[2001:db8::1]:4242'] });
    expect(definitionOf('lh-a')).toEqual({
      ageRecipient: made.ageRecipient,
      sshHostPublicKey: made.sshHostPublicKey,
      psynetAddress: '10.10.8.1',
      psynet: { role: 'lighthouse', underlay: ['192.168.77.1:4242', '[2001:db8::1]:4242'] },
      config: { version: 1 },
    });
    expect(JSON.parse(registry()).hosts.find((h: { name: string }) => h.name === 'lh-a')).toMatchObject({ role: 'lighthouse', groups: ['lighthouses'] });
    // The real nebula-cert reads the certificate on the volume: the lighthouse address and group.
    const { stdout } = await run('nebula-cert', ['print', '-json', '-path', join(work, 'lh-a', 'psynet.host.crt')], { timeout: 30_000 });
    expect(JSON.parse(stdout).details).toMatchObject({ name: 'lh-a', ips: ['10.10.8.1/22'], groups: ['lighthouses'] });

    // A rekey without --lighthouse keeps the role and the endpoints; with it, the endpoints are replaced.
    const kept = await createNode(options('lh-a', { kind: 'dir', path: join(work, 'lh-a2') }, { rekey: true }));
    expect(kept).toMatchObject({ role: 'lighthouse', psynetAddress: '10.10.8.1', underlay: ['192.168.77.1:4242', '[2001:db8::1]:4242'] });
    expect(definitionOf('lh-a').psynet).toEqual({ role: 'lighthouse', underlay: ['192.168.77.1:4242', '[2001:db8::1]:4242'] });
    await createNode(options('lh-a', { kind: 'dir', path: join(work, 'lh-a3') }, { rekey: true, lighthouse: { underlay: ['lh-a.example.org:443'] } }));
    expect(definitionOf('lh-a').psynet).toEqual({ role: 'lighthouse', underlay: ['lh-a.example.org:443'] });
    expect(await readNodeLighthouses(nodesDir)).toEqual([
      { name: 'lh-a', definitionFile: join(nodesDir, 'lh-a.json'), underlay: ['lh-a.example.org:443'], listenPort: 443 },
    ]);

    // A plain node stays a plain node: no psynet section, and --lighthouse on it is refused.
    expect(definitionOf('n1').psynet).toBeUndefined();
    const before = registry();
    await expect(
      createNode(options('n1', { kind: 'dir', path: join(work, 'n1-lh') }, { rekey: true, lighthouse: { underlay: ['192.168.77.2:4242'] } })),
    ).rejects.toMatchObject({
      code: 'HOST_CONFLICT',
      message: expect.stringMatching(/^n1 is in the psynet registry as a node \(10\.10\.10\.1\), not a lighthouse;/),
    });
    expect(registry()).toBe(before);
    expect(existsSync(join(work, 'n1-lh'))).toBe(false);
  });

  it('refuses a bad lighthouse endpoint in one line before anything is allocated', async () => {
    const before = registry();
    const cases: [string[], RegExp][] = [
      [[], /^a lighthouse needs at least one underlay endpoint HOST:PORT/],
      [['192.168.77.1'], /^lighthouse endpoint "192\.168\.77\.1" is not HOST:PORT \(no port\)$/],
      [['[2001:db8::1]'], /\(no port\)$/],
      [['192.168.77.1:0'], /\(the port must be 1-65535\)$/],
      [['192.168.77.1:65536'], /\(the port must be 1-65535\)$/],
      [['192.168.77.1:04242'], /\(the port must be 1-65535\)$/],
      [['192.168.77.1:'], /\(the port must be 1-65535\)$/],
      [['300.1.2.3:4242'], /\(300\.1\.2\.3 is not an IPv4 address\)$/],
      [['2001:db8::1:4242'], /\(an IPv6 address goes in brackets: \[2001:db8::1\]:4242\)$/],
      [['[2001:db8::zz]:4242'], /\(2001:db8::zz is not an IPv6 address\)$/],
      [['bad_host:4242'], /\("bad_host" is not a host name, an IPv4 address or a bracketed IPv6 address\)$/],
      [[':4242'], /\("" is not a host name/],
      [['-lead.example.org:4242'], /is not a host name/],
      [['192.168.77.1:4242', '192.168.77.1:4242'], /^lighthouse endpoint "192\.168\.77\.1:4242" is given twice$/],
      [['192.168.77.1:4242', '[2001:db8::1]:4243'], /^lighthouse endpoints "192\.168\.77\.1:4242" and "\[2001:db8::1\]:4243" have different ports/],
    ];
    for (const [underlay, message] of cases) {
      const result = createNode(options('lh-bad', { kind: 'dir', path: join(work, 'lh-bad') }, { lighthouse: { underlay } }));
      await expect(result, underlay.join(' ')).rejects.toMatchObject({ code: 'BAD_NODE_INPUT', message: expect.stringMatching(message) });
    }
    expect(registry()).toBe(before);
    expect(existsSync(join(work, 'lh-bad'))).toBe(false);
    expect(existsSync(join(nodesDir, 'lh-bad.json'))).toBe(false);
    // The same endpoints pass: a host name, an IPv4 and a bracketed IPv6 address, ports 1 and 65535.
    for (const underlay of [['lh-b.example.org:1'], ['10.0.0.1:65535', '[::1]:65535', 'localhost:65535']]) {
      const made = await createNode(options('lh-b', { kind: 'dir', path: join(work, `lh-b-${underlay.length}`) }, { lighthouse: { underlay }, rekey: true }));
      expect(made.underlay).toEqual(underlay);
    }
  });

  it('site build reads the lighthouses among the definitions, and refuses a malformed psynet section', async () => {
    const dir = tempDir('lighthouse-definitions');
    writeFileSync(join(dir, 'plain.json'), JSON.stringify({ config: { version: 1 } }));
    writeFileSync(join(dir, 'lh-2.json'), JSON.stringify({ psynet: { role: 'lighthouse', underlay: ['192.0.2.2:4242'] }, config: { version: 1 } }));
    writeFileSync(join(dir, 'lh-1.json'), JSON.stringify({ psynet: { role: 'lighthouse', underlay: [] }, config: { version: 1 } }));
    writeFileSync(join(dir, 'notes.txt'), 'not a definition');
    expect(await readNodeLighthouses(dir)).toEqual([
      { name: 'lh-1', definitionFile: join(dir, 'lh-1.json'), underlay: [] },
      { name: 'lh-2', definitionFile: join(dir, 'lh-2.json'), underlay: ['192.0.2.2:4242'], listenPort: 4242 },
    ]);
    expect(await readNodeLighthouses(join(dir, 'missing'))).toEqual([]);
    for (const [psynet, message] of [
      [{ role: 'node' }, /lh-3\.json: psynet must be \{"role": "lighthouse", "underlay"/],
      [{ role: 'lighthouse', underlay: '192.0.2.3:4242' }, /psynet must be/],
      [{ role: 'lighthouse', underlay: ['192.0.2.3'] }, /lh-3\.json: psynet\.underlay: lighthouse endpoint "192\.0\.2\.3" is not HOST:PORT \(no port\)$/],
    ] as const) {
      writeFileSync(join(dir, 'lh-3.json'), JSON.stringify({ psynet, config: { version: 1 } }));
      await expect(readNodeLighthouses(dir)).rejects.toMatchObject({ code: 'BAD_NODE_DEFINITION', message: expect.stringMatching(message) });
    }
    writeFileSync(join(dir, 'lh-3.json'), '{ "psynet": ');
    await expect(readNodeLighthouses(dir)).rejects.toMatchObject({
      code: 'BAD_NODE_DEFINITION',
      message: expect.stringMatching(/lh-3\.json is not valid JSON/),
    });
  });
});

describe('createNode: the secret volume while it is written', () => {
  const work = tempDir('node-create-modes');
  const psynet = { dir: join(work, 'psynet'), plan: { ...PLAN, pools: { ...PLAN.pools, node: '10.10.10.0/24' } } };
  const files = psynetFiles(psynet.dir);
  const nodesDir = join(work, 'nodes');
  const options = (name: string, output: CreateNodeOptions['output'], extra: Partial<CreateNodeOptions> = {}): CreateNodeOptions => ({
    name,
    mac: MAC,
    output,
    minisignPublicKeyFile: join(work, 'minisign.pub'),
    psynet,
    nodesDir,
    ...extra,
  });
  const registry = () => readFileSync(files.registry, 'utf8');

  beforeAll(async () => {
    mkdirSync(nodesDir);
    writeFileSync(join(work, 'minisign.pub'), encodePublicKey(generateKeyPair()));
    await initCa(files, { name: 'psyops test', durationSeconds: 86_400, now: Math.floor(Date.now() / 1000), network: resolvePlan(PLAN).network });
    await updateRegistry(
      files.registry,
      (r) => void allocateHost(r, resolvePlan(psynet.plan), { name: 'other', role: 'node', created: '2025-01-01T00:00:00Z' }),
    );
  });

  for (const mask of [0o022, 0o000]) {
    it(`under umask ${mask.toString(8).padStart(3, '0')} the image and its keys are never readable by others, not even while mkfs.ext4 runs`, async () => {
      const out = tempDir('secret-modes');
      const log = join(tempDir('mkfs-log'), 'log');
      const image = join(out, 'modes.img');
      const made = await withUmask(mask, () =>
        withWatchingMkfs(log, 0.3, async () => {
          const created = createNode(options(`modes-${mask}`, { kind: 'image', path: image }, { testonlyToor: true }));
          return { seen: await watchModes(out, created), node: await created };
        }),
      );
      expect(made.node.output.path).toBe(image);
      expect(readdirSync(out)).toEqual(['modes.img']);
      expect(statMode(image)).toBe(0o600);
      const { stdout: label } = await run('e2label', [image], { timeout: 30_000 });
      expect(label.trim()).toBe('psyops-secret');

      // Sampled from outside while it was made: nothing beside the output was ever open to group or others,
      // and no private file anywhere was ever more than 0600.
      const seen = [...made.seen].map(([path, modes]) => ({ path, name: path.split('/').at(-1)!, modes: [...modes].sort() }));
      const open = (mode: string) => (Number.parseInt(mode.slice(1), 8) & 0o077) !== 0;
      for (const { path, modes } of seen.filter(({ path }) => !path.includes('/'))) expect(modes.filter(open), path).toEqual([]);
      for (const { path, name, modes } of seen) if (PRIVATE_FILES.includes(name)) expect(modes, path).toEqual(['f600']);
      // How: a temporary 0700 directory beside the output, holding the staged files (a 0700 folder) and the
      // image (0600 from the start), which is renamed to the output once complete.
      const top = seen.filter(({ path }) => !path.includes('/'));
      expect(top.filter(({ path }) => path !== 'modes.img').map(({ path, modes }) => `${path} ${modes}`)).toEqual([
        expect.stringMatching(/^\.modes\.img\.tmp-\w+ d700$/),
      ]);
      expect(top.find(({ path }) => path === 'modes.img')?.modes ?? ['f600']).toEqual(['f600']);
      const inside = seen.filter(({ path }) => path.includes('/')).map(({ path, modes }) => `${path.split('/').slice(1).join('/')} ${modes}`);
      expect(inside).toEqual(expect.arrayContaining(['image f600', 'content d700', 'content/age.key f600', 'content/psynet.host.key f600']));

      // Seen by mkfs.ext4 itself, before it wrote and after: the image 0600 in a 0700 directory, the private files 0600.
      const snaps = readFileSync(log, 'utf8')
        .trimEnd()
        .split(/^== /m)
        .slice(1)
        .map((block) => block.trimEnd().split('\n'));
      expect(snaps.map((lines) => lines[0])).toEqual(['before', 'after']);
      for (const [when, dir, file, ...content] of snaps) {
        expect([dir, file], when).toEqual([expect.stringMatching(/^700 directory /), expect.stringMatching(/^600 regular (empty )?file /)]);
        const modeOf = (name: string) => content.find((line) => line.endsWith(`/${name}`))?.split(' ')[0];
        for (const name of PRIVATE_FILES) expect(modeOf(name), `${when} ${name}`).toBe('600');
        expect(modeOf('minisign.pubkey'), when).toBe('644');
        expect(
          content.filter((line) => line.includes(' directory ')).map((line) => line.split(' ')[0]),
          when,
        ).toEqual(['700']);
      }
    });
  }

  it('an abort while mkfs.ext4 runs removes every temporary file, takes the allocation back and writes nothing', async () => {
    const out = tempDir('secret-abort');
    const log = join(tempDir('mkfs-log'), 'log');
    const before = registry();
    const hosts = readdirSync(files.hostsDir).sort();
    const controller = new AbortController();
    const result = await withWatchingMkfs(log, 30, async () => {
      const created = createNode(options('aborted', { kind: 'image', path: join(out, 'aborted.img') }, { signal: controller.signal }));
      created.catch(() => undefined);
      // Wait (bounded) until mkfs.ext4 has written the image into its temporary directory, then abort.
      const deadline = Date.now() + 60_000;
      while (!existsSync(`${log}.running`) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(existsSync(`${log}.running`)).toBe(true);
      expect(readdirSync(out)).toHaveLength(1); // the temporary directory (or file) mkfs.ext4 writes into
      const started = Date.now();
      controller.abort();
      const error = await created.then(
        () => undefined,
        (error: unknown) => error,
      );
      return { error, ms: Date.now() - started };
    });
    expect(result.error).toMatchObject({ code: 'INTERRUPTED', message: `interrupted: ${join(out, 'aborted.img')} was not written` });
    expect(result.ms).toBeLessThan(10_000); // mkfs.ext4 (sleeping for 30 s) was killed, not waited for
    expect(readdirSync(out)).toEqual([]);
    expect(registry()).toBe(before);
    expect(readdirSync(files.hostsDir).sort()).toEqual(hosts);
    expect(existsSync(join(nodesDir, 'aborted.json'))).toBe(false);

    // An abort before anything is written writes nothing either, for a folder too.
    await expect(createNode(options('aborted', { kind: 'dir', path: join(out, 'aborted') }, { signal: AbortSignal.abort() }))).rejects.toMatchObject({
      code: 'INTERRUPTED',
    });
    expect(readdirSync(out)).toEqual([]);
    expect(registry()).toBe(before);
  });
});
