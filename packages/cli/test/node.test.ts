import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { execa } from 'execa';
import { CLI, errorLine, listing, psyops, tempDir } from './helpers.js';

const run = promisify(execFile);
const root = tempDir('cli-node');
const MAC = '52:54:00:12:34:56';

async function ok(ws: string, args: string[]): Promise<string> {
  const result = await psyops(args, { cwd: ws });
  expect(result.exitCode, `psyops ${args.join(' ')}: ${result.stderr}`).toBe(0);
  expect(result.stderr).toBe('');
  return result.stdout;
}

/** Extracts an ext4 image with debugfs (no root, no loop mount). */
async function extractImage(image: string, dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  await run('debugfs', ['-R', `rdump / ${dir}`, image], { timeout: 30_000 });
}

/** Every file `node create` may touch, with its bytes: the registry, psynet/hosts, nodes/, and the workspace's top level. */
const contents = (dir: string) => (existsSync(dir) ? Object.fromEntries(listing(dir).map((name) => [name, readFileSync(join(dir, name), 'utf8')])) : {});
const snapshot = (ws: string) => ({
  top: listing(ws),
  nodes: contents(join(ws, 'nodes')),
  registry: existsSync(join(ws, 'psynet', 'registry.json')) ? readFileSync(join(ws, 'psynet', 'registry.json'), 'utf8') : undefined,
  hosts: contents(join(ws, 'psynet', 'hosts')),
});
const registryOf = (ws: string) => readFileSync(join(ws, 'psynet', 'registry.json'), 'utf8');
const hostEntry = (ws: string, name: string) => JSON.parse(registryOf(ws)).hosts.find((host: { name: string }) => host.name === name);
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** The fingerprint the real ssh-keygen gives a public key line: `SHA256:…`. */
async function sshFingerprint(publicKey: string): Promise<string> {
  const file = join(root, `fp-${Math.random().toString(16).slice(2)}.pub`);
  writeFileSync(file, `${publicKey}\n`);
  const { stdout } = await run('ssh-keygen', ['-l', '-f', file], { timeout: 30_000 });
  return stdout.split(' ')[1]!;
}

describe('psyops node create', () => {
  let ws: string;
  beforeAll(async () => {
    ws = join(root, 'ws');
    expect((await psyops(['init', ws, '--no-password'])).exitCode).toBe(0);
    await ok(ws, ['psynet', 'ca', 'init', '--name', 'psyops test']);
    await ok(ws, ['psynet', 'allocate', 'placeholder', '--role', 'node']);
    await ok(ws, ['psynet', 'allocate', 'lh1', '--role', 'lighthouse']);
    await ok(ws, ['psynet', 'allocate', 'laptop', '--role', 'client']);
  });

  it('writes an ext4 image labelled psyops-secret whose keys the real tools accept, and records the public parts', async () => {
    const out = await ok(ws, [
      'node',
      'create',
      'test-node-1',
      '--mac',
      '52-54-00-12-34-56',
      '--site-url',
      'http://10.0.2.100',
      '--testonly-toor',
      '--out',
      'secret.img',
    ]);
    const image = join(ws, 'secret.img');
    expect(statSync(image).mode & 0o777).toBe(0o600);
    const { stdout: label } = await run('e2label', [image], { timeout: 30_000 });
    expect(label.trim()).toBe('psyops-secret');

    const dir = join(root, 'extracted');
    await extractImage(image, dir);
    expect(readdirSync(dir).sort()).toEqual(
      [
        'TESTONLYNOPROD.env',
        'age.key',
        'lost+found',
        'mactab',
        'minisign.pubkey',
        'network.interfaces',
        'nodename',
        'psynet.ca.crt',
        'psynet.host.crt',
        'psynet.host.key',
        'site.url',
        'ssh_host_ed25519_key',
      ].sort(),
    );
    for (const name of ['age.key', 'ssh_host_ed25519_key', 'psynet.host.key', 'nodename', 'TESTONLYNOPROD.env'])
      expect(statSync(join(dir, name)).mode & 0o777, name).toBe(0o600);
    expect(readFileSync(join(dir, 'nodename'), 'utf8')).toBe('test-node-1\n');
    expect(readFileSync(join(dir, 'mactab'), 'utf8')).toBe(`psy0 ${MAC}\n`);
    expect(readFileSync(join(dir, 'network.interfaces'), 'utf8')).toContain('auto psy0\niface psy0 inet dhcp');
    expect(readFileSync(join(dir, 'site.url'), 'utf8')).toBe('http://10.0.2.100\n');
    expect(readFileSync(join(dir, 'minisign.pubkey'), 'utf8')).toBe(readFileSync(join(ws, 'keys', 'minisign.pub'), 'utf8'));
    expect(readFileSync(join(dir, 'TESTONLYNOPROD.env'), 'utf8')).toContain('PSYOPSOS_TESTING_ONLY_NO_PROD_ADD_TOOR_BLANK_PW=yes');
    expect(out).toContain('WARNING: --testonly-toor');

    const definition = JSON.parse(readFileSync(join(ws, 'nodes', 'test-node-1.json'), 'utf8'));
    expect(definition).toEqual({
      ageRecipient: expect.stringMatching(/^age1/),
      sshHostPublicKey: expect.stringMatching(/^ssh-ed25519 /),
      psynetAddress: '10.10.10.2',
      config: { version: 1 },
    });
    expect(out).toContain(`age recipient ${definition.ageRecipient}`);
    expect(out).toContain(`ssh host key fingerprint ${await sshFingerprint(definition.sshHostPublicKey)}\n`);
    expect(out).toContain(`psynet certificate ${hostEntry(ws, 'test-node-1').certificate.fingerprint}\n`);

    // The real ssh-keygen derives the recorded public key from the private key on the volume.
    const { stdout: sshPublic } = await run('ssh-keygen', ['-y', '-f', join(dir, 'ssh_host_ed25519_key')], { timeout: 30_000 });
    expect(sshPublic.trim()).toBe(definition.sshHostPublicKey);

    // The real age decrypts, with the volume's identity, what it encrypted to the recorded recipient.
    await execa('age', ['-r', definition.ageRecipient, '-a', '-o', join(root, 'token.age')], { input: 'k3s-token', timeout: 30_000 });
    const { stdout: plain } = await run('age', ['-d', '-i', join(dir, 'age.key'), join(root, 'token.age')], { timeout: 30_000 });
    expect(plain).toBe('k3s-token');

    // The real nebula-cert accepts the psynet certificate against the workspace CA; its key is only on the volume.
    await run('nebula-cert', ['verify', '-ca', join(ws, 'psynet', 'ca.crt'), '-crt', join(dir, 'psynet.host.crt')], { timeout: 30_000 });
    const { stdout: printed } = await run('nebula-cert', ['print', '-json', '-path', join(dir, 'psynet.host.crt')], { timeout: 30_000 });
    expect(JSON.parse(printed).details).toMatchObject({ name: 'test-node-1', ips: ['10.10.10.2/22'], groups: ['psyopsOS'] });
    expect(existsSync(join(ws, 'psynet', 'hosts', 'test-node-1.key'))).toBe(false);
    expect(readFileSync(join(ws, 'psynet', 'registry.json'), 'utf8')).toContain('"test-node-1"');
  });

  it('writes a folder with --dir, keeps a hand-written config; replaces an existing node only with --rekey, its output only with -f', async () => {
    const config = { version: 7, services: ['app'], files: [{ path: '/etc/motd', content: 'hi' }] };
    writeFileSync(join(ws, 'nodes', 'node2.json'), JSON.stringify({ config }));
    await ok(ws, ['node', 'create', 'node2', '--mac', 'aa:bb:cc:dd:ee:ff', '--dir', 'node2-secret']);
    const dir = join(ws, 'node2-secret');
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(readdirSync(dir).sort()).toEqual([
      'age.key',
      'mactab',
      'minisign.pubkey',
      'network.interfaces',
      'nodename',
      'psynet.ca.crt',
      'psynet.host.crt',
      'psynet.host.key',
      'ssh_host_ed25519_key',
    ]);
    const first = JSON.parse(readFileSync(join(ws, 'nodes', 'node2.json'), 'utf8'));
    expect(first.config).toEqual(config);
    const ageKey = readFileSync(join(dir, 'age.key'), 'utf8');

    // Changed on purpose: a second create of the same node used to replace its keys with -f (FILE_EXISTS without it);
    // now the node itself is refused (NODE_EXISTS) unless --rekey, and -f only allows replacing the output.
    const create2 = ['node', 'create', 'node2', '--mac', 'aa:bb:cc:dd:ee:ff', '--dir', 'node2-secret'];
    const refused = await psyops(create2, { cwd: ws });
    expect(refused.exitCode).toBe(1);
    expect(errorLine(refused).code).toBe('NODE_EXISTS');
    expect(errorLine(refused).message).toMatch(
      /^node node2 already exists \(.*nodes\/node2\.json records its keys; the psynet registry has it at 10\.10\.10\.3\).*--rekey/,
    );
    expect(errorLine(refused).message).toContain(`-f to replace ${dir}`);
    const forced = await psyops([...create2, '-f'], { cwd: ws });
    expect(errorLine(forced).code).toBe('NODE_EXISTS');
    expect(errorLine(forced).message).not.toContain('-f to replace');
    const rekeyOnly = await psyops([...create2, '--rekey'], { cwd: ws });
    expect(errorLine(rekeyOnly)).toEqual({ code: 'FILE_EXISTS', message: `refusing to overwrite ${dir} (use -f to replace it)` });
    expect(readFileSync(join(dir, 'age.key'), 'utf8')).toBe(ageKey);
    expect(JSON.parse(readFileSync(join(ws, 'nodes', 'node2.json'), 'utf8'))).toEqual(first);

    const rekeyed = await ok(ws, [...create2, '--rekey', '-f']);
    expect(rekeyed).toContain('REKEYED');
    expect(readFileSync(join(dir, 'age.key'), 'utf8')).not.toBe(ageKey);
    const second = JSON.parse(readFileSync(join(ws, 'nodes', 'node2.json'), 'utf8'));
    expect(second.config).toEqual(config);
    expect(second.ageRecipient).not.toBe(first.ageRecipient);
    expect(second.psynetAddress).toBe(first.psynetAddress);

    // Changed on purpose: the node exists, which is said first (was FILE_EXISTS for its existing image).
    const image = await psyops(['node', 'create', 'test-node-1', '--mac', MAC, '--out', 'secret.img'], { cwd: ws });
    expect(errorLine(image).code).toBe('NODE_EXISTS');
    expect(errorLine(image).message).toContain(`-f to replace ${join(ws, 'secret.img')}`);
  });

  it('refuses a --site-url with credentials in one line that never echoes the password, and writes nothing', async () => {
    const before = snapshot(ws);
    const result = await psyops(['node', 'create', 'n4', '--mac', MAC, '--site-url', 'http://node:hunter2-c0ffee@site.example.org/', '--out', 'n4.img'], {
      cwd: ws,
    });
    expect(result.exitCode).not.toBe(0);
    expect(errorLine(result)).toEqual({
      code: 'BAD_NODE_INPUT',
      message: '--site-url: the site URL of site.example.org carries credentials (user:password@): refused, the site is public and signed',
    });
    expect(`${result.stdout}${result.stderr}`).not.toContain('hunter2');
    expect(existsSync(join(ws, 'n4.img'))).toBe(false);
    expect(snapshot(ws)).toEqual(before);
  });

  it('a bad MAC, name, option, output path or an existing node is one line and writes nothing', async () => {
    const before = snapshot(ws);
    const secretImage = sha256(join(ws, 'secret.img'));
    const cases: [string[], string, RegExp][] = [
      [['node', 'create', 'n3', '--mac', '52:54:00:12:34', '--out', 'n3.img'], 'BAD_NODE_INPUT', /"52:54:00:12:34" is not a MAC address/],
      [['node', 'create', 'Bad_Name', '--mac', MAC, '--out', 'n3.img'], 'BAD_NODE_INPUT', /node name "Bad_Name"/],
      [['node', 'create', 'n3', '--mac', MAC], 'USAGE', /exactly one of --out IMAGE and --dir DIR/],
      [['node', 'create', 'n3', '--mac', MAC, '--out', 'a.img', '--dir', 'b'], 'USAGE', /exactly one of/],
      [['node', 'create', 'n3', '--mac', MAC, '--site-url', 'ftp://x', '--out', 'n3.img'], 'BAD_NODE_INPUT', /not an http\(s\) URL/],
      [['node', 'create', 'n3', '--mac', MAC, '--interfaces', 'missing.txt', '--out', 'n3.img'], 'FILE_NOT_FOUND', /interfaces file/],
      // The directory of the output is never created.
      [['node', 'create', 'n3', '--mac', MAC, '--out', 'missing/n3.img'], 'FILE_NOT_FOUND', /^the directory .*\/ws\/missing does not exist/],
      [['node', 'create', 'n3', '--mac', MAC, '--dir', 'missing/deeper/n3'], 'FILE_NOT_FOUND', /^the directory .*\/ws\/missing\/deeper does not exist/],
      [['node', 'create', 'n3', '--mac', MAC, '--out', 'secret.img'], 'FILE_EXISTS', /refusing to overwrite .*secret\.img \(use -f/],
      [['node', 'create', 'n3', '--mac', MAC, '--out', 'nodes', '-f'], 'NOT_A_FILE', /nodes is not a regular file/],
      [['node', 'create', 'n3', '--mac', MAC, '--dir', 'secret.img', '-f'], 'NOT_A_FILE', /secret\.img is not a directory/],
      // An existing node: by its definition and the registry, or by the registry alone; another role never.
      [['node', 'create', 'test-node-1', '--mac', MAC, '--out', 'n3.img'], 'NODE_EXISTS', /^node test-node-1 already exists .*give --rekey to do that$/],
      [['node', 'create', 'placeholder', '--mac', MAC, '--out', 'n3.img', '-f'], 'NODE_EXISTS', /\(the psynet registry has it at 10\.10\.10\.1\)/],
      // Changed on purpose: was lh1, a lighthouse, which --rekey now keeps a lighthouse (see node create --lighthouse below).
      [
        ['node', 'create', 'laptop', '--mac', MAC, '--out', 'n3.img', '--rekey'],
        'HOST_CONFLICT',
        /^laptop is in the psynet registry as a client \(10\.10\.9\.1\), not a node;/,
      ],
      [
        ['node', 'create', 'placeholder', '--mac', MAC, '--out', 'n3.img', '--rekey', '--lighthouse', '192.168.77.1:4242'],
        'HOST_CONFLICT',
        /^placeholder is in the psynet registry as a node \(10\.10\.10\.1\), not a lighthouse;/,
      ],
    ];
    for (const [args, code, message] of cases) {
      const result = await psyops(args, { cwd: ws });
      expect(result.exitCode, args.join(' ')).toBe(code === 'USAGE' ? 2 : 1);
      expect(result.stdout, args.join(' ')).toBe('');
      const line = errorLine(result);
      expect(line.code, line.message).toBe(code);
      expect(line.message).toMatch(message);
      expect(registryOf(ws), args.join(' ')).toBe(before.registry);
    }
    expect(snapshot(ws)).toEqual(before);
    expect(sha256(join(ws, 'secret.img'))).toBe(secretImage);
  });

  it('a workspace without its keys is one line and writes nothing', async () => {
    const bare = join(root, 'bare');
    expect((await psyops(['init', bare, '--no-password'])).exitCode).toBe(0);
    const create = ['node', 'create', 'n1', '--mac', MAC, '--out', 'n1.img'];
    const initial = snapshot(bare);
    expect(errorLine(await psyops(create, { cwd: bare })).code).toBe('CA_MISSING');
    expect(snapshot(bare)).toEqual(initial);
    await ok(bare, ['psynet', 'ca', 'init', '--name', 'bare']);
    await ok(bare, ['psynet', 'allocate', 'other', '--role', 'node']);
    const withCa = snapshot(bare);
    writeFileSync(join(bare, 'nodes', 'n1.json'), '{ "config": ');
    const broken = errorLine(await psyops(create, { cwd: bare }));
    expect(broken).toMatchObject({ code: 'BAD_NODE_INPUT', message: expect.stringMatching(/n1\.json is not valid JSON/) });
    expect(registryOf(bare)).toBe(withCa.registry);
    rmSync(join(bare, 'nodes', 'n1.json'));
    renameSync(join(bare, 'keys', 'minisign.pub'), join(bare, 'minisign.pub.away'));
    const noKey = errorLine(await psyops(create, { cwd: bare }));
    expect(noKey).toMatchObject({ code: 'FILE_NOT_FOUND', message: expect.stringMatching(/workspace minisign public key/) });
    renameSync(join(bare, 'minisign.pub.away'), join(bare, 'keys', 'minisign.pub'));
    expect(snapshot(bare)).toEqual(withCa);
    rmSync(join(bare, 'psynet', 'ca.key'));
    expect(errorLine(await psyops(create, { cwd: bare })).code).toBe('CA_MISSING');
    expect(registryOf(bare)).toBe(withCa.registry);
    expect(existsSync(join(bare, 'n1.img'))).toBe(false);
  });

  it('a volume that cannot be written takes the allocation and the certificate back', async () => {
    const fakeBin = join(root, 'fakebin');
    mkdirSync(fakeBin);
    writeFileSync(join(fakeBin, 'mkfs.ext4'), '#!/bin/sh\necho "mkfs.ext4: no space left on device" >&2\nexit 1\n', { mode: 0o755 });
    const env = { PATH: `${fakeBin}:${process.env.PATH}` };
    const before = snapshot(ws);
    const secretImage = sha256(join(ws, 'secret.img'));
    for (const args of [
      ['node', 'create', 'n4', '--mac', MAC, '--out', 'n4.img'],
      ['node', 'create', 'test-node-1', '--mac', MAC, '--out', 'secret.img', '--rekey', '-f'],
    ]) {
      const result = await psyops(args, { cwd: ws, env });
      expect(errorLine(result).code, args.join(' ')).toBe('TOOL_FAILED');
      expect(registryOf(ws), args.join(' ')).toBe(before.registry);
      expect(snapshot(ws), args.join(' ')).toEqual(before);
    }
    expect(sha256(join(ws, 'secret.img'))).toBe(secretImage);
  });

  it('--rekey replaces the keys and certificate, keeps the address, and says what it replaced', async () => {
    const create = ['node', 'create', 'node-r', '--mac', MAC, '--out', 'node-r.img'];
    await ok(ws, create);
    const before = JSON.parse(readFileSync(join(ws, 'nodes', 'node-r.json'), 'utf8'));
    const entryBefore = hostEntry(ws, 'node-r');
    const out = await ok(ws, [...create, '--rekey', '-f']);
    const after = JSON.parse(readFileSync(join(ws, 'nodes', 'node-r.json'), 'utf8'));
    const entryAfter = hostEntry(ws, 'node-r');
    expect(after.psynetAddress).toBe(before.psynetAddress);
    expect(entryAfter.ip).toBe(entryBefore.ip);
    expect(after.ageRecipient).not.toBe(before.ageRecipient);
    expect(after.sshHostPublicKey).not.toBe(before.sshHostPublicKey);
    expect(entryAfter.certificate.fingerprint).not.toBe(entryBefore.certificate.fingerprint);
    expect(out).toContain('REKEYED');
    expect(out).toContain(`psynet ${before.psynetAddress} (kept)\n`);
    expect(out).toContain(`age recipient ${after.ageRecipient} (was ${before.ageRecipient})\n`);
    expect(out).toContain(`ssh host key fingerprint ${await sshFingerprint(after.sshHostPublicKey)} (was ${await sshFingerprint(before.sshHostPublicKey)})\n`);
    expect(out).toContain(`psynet certificate ${entryAfter.certificate.fingerprint} (was ${entryBefore.certificate.fingerprint})\n`);
    expect(out).toContain(`the old psynet certificate stays valid until ${entryBefore.certificate.notAfter}`);
    // The new volume holds the new keys and certificate.
    const dir = join(root, 'extracted-r');
    await extractImage(join(ws, 'node-r.img'), dir);
    expect(readFileSync(join(dir, 'age.key'), 'utf8')).toContain(`# public key: ${after.ageRecipient}\n`);
    const { stdout: sshPublic } = await run('ssh-keygen', ['-y', '-f', join(dir, 'ssh_host_ed25519_key')], { timeout: 30_000 });
    expect(sshPublic.trim()).toBe(after.sshHostPublicKey);
    const { stdout: printed } = await run('nebula-cert', ['print', '-json', '-path', join(dir, 'psynet.host.crt')], { timeout: 30_000 });
    expect(JSON.parse(printed)).toMatchObject({ fingerprint: entryAfter.certificate.fingerprint, details: { ips: [`${before.psynetAddress}/22`] } });
  });

  it('node known-hosts prints known_hosts lines the real OpenSSH finds, with the keys on the volumes', async () => {
    writeFileSync(join(ws, 'nodes', 'planned.json'), JSON.stringify({ config: { version: 1 } }));
    const all = await ok(ws, ['node', 'known-hosts']);
    const definition = (name: string) => JSON.parse(readFileSync(join(ws, 'nodes', `${name}.json`), 'utf8'));
    const names = ['node-r', 'node2', 'test-node-1'];
    expect(
      all
        .trimEnd()
        .split('\n')
        .map((line) => line.split(' ')[0]),
    ).toEqual(names.map((name) => `${name},${name}.psynet.internal,${definition(name).psynetAddress}`));
    const file = join(root, 'known_hosts');
    writeFileSync(file, all);
    const listed = await run('ssh-keygen', ['-l', '-f', file], { timeout: 30_000 });
    expect(listed.stdout.trimEnd().split('\n')).toHaveLength(3);
    expect(listed.stdout).toContain(await sshFingerprint(definition('test-node-1').sshHostPublicKey));

    // Each node's key is the one its secret volume holds: derived by the real ssh-keygen from the private key there.
    const privateKeys: Record<string, string> = {
      'test-node-1': join(root, 'extracted', 'ssh_host_ed25519_key'),
      node2: join(ws, 'node2-secret', 'ssh_host_ed25519_key'),
      'node-r': join(root, 'extracted-r', 'ssh_host_ed25519_key'),
    };
    for (const name of names) {
      const { stdout: derived } = await run('ssh-keygen', ['-y', '-f', privateKeys[name]!], { timeout: 30_000 });
      const key = derived.trim().split(' ').slice(0, 2).join(' ');
      for (const host of [name, `${name}.psynet.internal`, definition(name).psynetAddress]) {
        const { stdout: found } = await run('ssh-keygen', ['-F', host, '-f', file], { timeout: 30_000 });
        expect(found, host).toContain(` ${key}\n`);
        expect(
          found.split('\n').filter((line) => line !== '' && !line.startsWith('#')),
          host,
        ).toHaveLength(1);
      }
    }
    const missing = await execa('ssh-keygen', ['-F', 'planned', '-f', file], { reject: false, timeout: 30_000 });
    expect(missing.exitCode).toBe(1);

    const json = JSON.parse(await ok(ws, ['node', 'known-hosts', '--json', 'test-node-1', 'node2']));
    expect(json).toEqual(
      ['test-node-1', 'node2'].map((name) => ({
        name,
        address: definition(name).psynetAddress,
        key: definition(name).sshHostPublicKey.split(' ').slice(0, 2).join(' '),
      })),
    );
    const some = await ok(ws, ['node', 'known-hosts', 'node2']);
    expect(some).toBe(`${all.split('\n')[1]}\n`);

    const unknown = await psyops(['node', 'known-hosts', 'node2', 'nope'], { cwd: ws });
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stdout).toBe('');
    expect(errorLine(unknown)).toEqual({
      code: 'NODE_NOT_FOUND',
      message: `no node nope in this workspace (${join(ws, 'nodes', 'nope.json')} does not exist)`,
    });
    const planned = await psyops(['node', 'known-hosts', 'planned'], { cwd: ws });
    expect(errorLine(planned)).toMatchObject({ code: 'BAD_NODE_DEFINITION', message: expect.stringMatching(/records no SSH host key/) });
  });
});

describe('psyops node create --json', () => {
  let ws: string;
  beforeAll(async () => {
    ws = join(root, 'ws-json');
    expect((await psyops(['init', ws, '--no-password'])).exitCode).toBe(0);
    await ok(ws, ['psynet', 'ca', 'init', '--name', 'psyops json']);
  });

  it('prints one JSON object about the node on stdout and the human text on stderr; --rekey says what it replaced', async () => {
    const create = ['node', 'create', 'node-j', '--mac', MAC, '--dir', 'node-j-secret', '--json'];
    const first = await psyops(create, { cwd: ws });
    expect(first.exitCode, first.stderr).toBe(0);
    const recorded = JSON.parse(readFileSync(join(ws, 'nodes', 'node-j.json'), 'utf8'));
    const report = JSON.parse(first.stdout);
    expect(report).toEqual({
      name: 'node-j',
      output: { kind: 'dir', path: join(ws, 'node-j-secret') },
      role: 'node',
      psynetAddress: recorded.psynetAddress,
      ageRecipient: recorded.ageRecipient,
      sshHostPublicKey: recorded.sshHostPublicKey,
      sshHostKeyFingerprint: await sshFingerprint(recorded.sshHostPublicKey),
      certificateFingerprint: hostEntry(ws, 'node-j').certificate.fingerprint,
      definitionFile: join(ws, 'nodes', 'node-j.json'),
      gitignored: ['/node-j-secret/'],
      testonlyToor: false,
      rekeyed: false,
    });
    expect(first.stderr).toContain(`node-j: secret volume written to ${join(ws, 'node-j-secret')} (files)\n`);
    expect(first.stderr).toContain(`  psynet ${recorded.psynetAddress}\n`);

    const again = await psyops([...create, '--rekey', '-f'], { cwd: ws });
    expect(again.exitCode, again.stderr).toBe(0);
    const rekeyed = JSON.parse(again.stdout);
    expect(rekeyed).toMatchObject({ name: 'node-j', psynetAddress: report.psynetAddress, rekeyed: true, gitignored: [] });
    expect(rekeyed.ageRecipient).not.toBe(report.ageRecipient);
    expect(rekeyed.replaced).toMatchObject({
      psynetAddress: report.psynetAddress,
      ageRecipient: report.ageRecipient,
      sshHostKeyFingerprint: report.sshHostKeyFingerprint,
      certificateFingerprint: report.certificateFingerprint,
    });
    expect(again.stderr).toContain('  REKEYED: ');

    // known-hosts --json: the node's record, as an array.
    const hosts = await psyops(['node', 'known-hosts', '--json'], { cwd: ws });
    expect([hosts.exitCode, hosts.stderr]).toEqual([0, '']);
    expect(JSON.parse(hosts.stdout)).toEqual([
      { name: 'node-j', address: rekeyed.psynetAddress, key: rekeyed.sshHostPublicKey.split(' ').slice(0, 2).join(' ') },
    ]);

    // A lighthouse also reports its endpoints.
    const lighthouse = await psyops(['node', 'create', 'lh-j', '--mac', MAC, '--dir', 'lh-j-secret', '--lighthouse', '192.168.77.7:4242', '--json'], {
      cwd: ws,
    });
    expect(lighthouse.exitCode, lighthouse.stderr).toBe(0);
    expect(JSON.parse(lighthouse.stdout)).toMatchObject({ name: 'lh-j', role: 'lighthouse', underlay: ['192.168.77.7:4242'], rekeyed: false });

    // A refusal prints no JSON.
    const refused = await psyops(create, { cwd: ws });
    expect([refused.exitCode, refused.stdout, errorLine(refused).code]).toEqual([1, '', 'NODE_EXISTS']);
  });
});

describe('psyops node create --lighthouse', () => {
  let ws: string;
  const definitionOf = (name: string) => JSON.parse(readFileSync(join(ws, 'nodes', `${name}.json`), 'utf8'));
  beforeAll(async () => {
    ws = join(root, 'ws-lighthouse');
    expect((await psyops(['init', ws, '--no-password'])).exitCode).toBe(0);
    await ok(ws, ['psynet', 'ca', 'init', '--name', 'psyops test']);
    await ok(ws, ['psynet', 'allocate', 'lh-vps', '--role', 'lighthouse']);
    await ok(ws, ['psynet', 'allocate', 'plain', '--role', 'node']);
  });

  it('--help explains it', async () => {
    const help = await psyops(['node', 'create', '--help']);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain('--lighthouse <HOST:PORT>');
    expect(help.stdout.replace(/\s+/g, ' ')).toContain('makes the node a psynet lighthouse: its address comes from the lighthouse pool');
  });

  it('makes a lighthouse: role and address from the lighthouse pool, its group on the certificate, its endpoints recorded and published', async () => {
    const out = await ok(ws, [
      'node',
      'create',
      'lh-node',
      '--mac',
      MAC,
      '--dir',
      'lh-node-secret',
      '--lighthouse',
      '192.168.77.1:4242,[2001:db8::1]:4242',
      '--lighthouse',
      'lh-node.example.org:4242',
    ]);
    const underlay = ['192.168.77.1:4242', '[2001:db8::1]:4242', 'lh-node.example.org:4242'];
    expect(hostEntry(ws, 'lh-node')).toMatchObject({ role: 'lighthouse', ip: '10.10.8.2', groups: ['lighthouses'] });
    expect(definitionOf('lh-node')).toEqual({
      ageRecipient: expect.stringMatching(/^age1/),
      sshHostPublicKey: expect.stringMatching(/^ssh-ed25519 /),
      psynetAddress: '10.10.8.2',
      psynet: { role: 'lighthouse', underlay },
      config: { version: 1 },
    });
    expect(out).toContain(`  psynet 10.10.8.2, lighthouse at ${underlay.join(' ')}\n`);
    const { stdout: printed } = await run('nebula-cert', ['print', '-json', '-path', join(ws, 'lh-node-secret', 'psynet.host.crt')], { timeout: 30_000 });
    expect(JSON.parse(printed).details).toMatchObject({ name: 'lh-node', ips: ['10.10.8.2/22'], groups: ['lighthouses'] });

    // site build publishes it at its endpoints; the registry's other lighthouse needs its address in psyops.config.json.
    const site = join(root, 'lh-site');
    const missing = await psyops(['site', 'build', '--out', site], { cwd: ws });
    expect(missing.exitCode).toBe(2);
    expect(errorLine(missing)).toMatchObject({ code: 'USAGE', message: expect.stringMatching(/^lighthouse lh-vps has no public address: /) });
    const configFile = join(ws, 'psyops.config.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8'));
    writeFileSync(configFile, JSON.stringify({ ...config, psynet: { ...config.psynet, lighthouses: { 'lh-vps': ['203.0.113.9:4242'] } } }));
    await ok(ws, ['site', 'build', '--out', site]);
    expect(JSON.parse(readFileSync(join(site, 'psynet', 'lighthouses.json'), 'utf8')).lighthouses).toEqual([
      { name: 'lh-node', overlayIp: '10.10.8.2', publicAddresses: underlay },
      { name: 'lh-vps', overlayIp: '10.10.8.1', publicAddresses: ['203.0.113.9:4242'] },
    ]);
  });

  it('--rekey keeps a lighthouse a lighthouse, with its endpoints unless new ones are given', async () => {
    const before = definitionOf('lh-node');
    const kept = await ok(ws, ['node', 'create', 'lh-node', '--mac', MAC, '--dir', 'lh-node-secret', '--rekey', '-f']);
    expect(kept).toContain(`  psynet 10.10.8.2 (kept), lighthouse at ${before.psynet.underlay.join(' ')}\n`);
    expect(hostEntry(ws, 'lh-node')).toMatchObject({ role: 'lighthouse', ip: '10.10.8.2', groups: ['lighthouses'] });
    expect(definitionOf('lh-node').psynet).toEqual(before.psynet);
    expect(definitionOf('lh-node').ageRecipient).not.toBe(before.ageRecipient);
    await ok(ws, ['node', 'create', 'lh-node', '--mac', MAC, '--dir', 'lh-node-secret', '--rekey', '-f', '--lighthouse', '192.168.77.5:443']);
    expect(definitionOf('lh-node').psynet).toEqual({ role: 'lighthouse', underlay: ['192.168.77.5:443'] });

    // A lighthouse only the registry knew becomes a psyopsOS lighthouse; psyops.config.json gives its endpoints.
    const vps = await ok(ws, ['node', 'create', 'lh-vps', '--mac', MAC, '--dir', 'lh-vps-secret', '--rekey']);
    expect(vps).toContain('  psynet 10.10.8.1 (kept), lighthouse at the addresses psynet.lighthouses in psyops.config.json gives it\n');
    expect(definitionOf('lh-vps').psynet).toEqual({ role: 'lighthouse', underlay: [] });
  });

  it('a bad endpoint, a plain node, a missing value: one line, exit 1 (2 for usage), nothing written', async () => {
    const before = snapshot(ws);
    const create = ['node', 'create', 'lh-new', '--mac', MAC, '--dir', 'lh-new-secret'];
    const cases: [string[], number, string, RegExp][] = [
      [[...create, '--lighthouse', '192.168.77.1'], 1, 'BAD_NODE_INPUT', /^lighthouse endpoint "192\.168\.77\.1" is not HOST:PORT \(no port\)$/],
      [[...create, '--lighthouse', '192.168.77.1:70000'], 1, 'BAD_NODE_INPUT', /\(the port must be 1-65535\)$/],
      [[...create, '--lighthouse', '2001:db8::1:4242'], 1, 'BAD_NODE_INPUT', /\(an IPv6 address goes in brackets: \[2001:db8::1\]:4242\)$/],
      [[...create, '--lighthouse', 'under_score.example:4242'], 1, 'BAD_NODE_INPUT', /is not a host name, an IPv4 address or a bracketed IPv6 address\)$/],
      [[...create, '--lighthouse', '192.168.77.1:4242,'], 1, 'BAD_NODE_INPUT', /^lighthouse endpoint "" is not HOST:PORT \(no port\)$/],
      [[...create, '--lighthouse', '192.168.77.1:4242,10.0.0.1:4243'], 1, 'BAD_NODE_INPUT', /have different ports: a lighthouse listens on one port$/],
      [
        ['node', 'create', 'plain', '--mac', MAC, '--dir', 'plain-secret', '--rekey', '--lighthouse', '192.168.77.1:4242'],
        1,
        'HOST_CONFLICT',
        /not a lighthouse/,
      ],
      [[...create, '--lighthouse'], 2, 'USAGE', /option '--lighthouse <HOST:PORT>' argument missing/],
    ];
    for (const [args, exitCode, code, message] of cases) {
      const result = await psyops(args, { cwd: ws });
      expect(result.exitCode, args.join(' ')).toBe(exitCode);
      expect(result.stdout, args.join(' ')).toBe('');
      expect(errorLine(result)).toMatchObject({ code, message: expect.stringMatching(message) });
    }
    expect(snapshot(ws)).toEqual(before);
  });
});

describe('psyops node status', () => {
  it('prints the status postboot wrote under --root, or one line when there is none', async () => {
    const nodeRoot = join(root, 'noderoot');
    mkdirSync(join(nodeRoot, 'etc', 'psyopsOS'), { recursive: true });
    const status = { format: 'psyops-node-status/1', status: 'ok', hostname: 'test-node-1' };
    writeFileSync(join(nodeRoot, 'etc', 'psyopsOS', 'status.json'), JSON.stringify(status));
    const result = await psyops(['node', 'status', '--root', nodeRoot]);
    expect(result.exitCode).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual(status);
    const json = await psyops(['node', 'status', '--root', nodeRoot, '--json']);
    expect([json.exitCode, json.stderr]).toEqual([0, '']);
    expect(JSON.parse(json.stdout)).toEqual(status);
    const missing = await psyops(['node', 'status', '--root', join(root, 'nowhere')]);
    expect(missing.exitCode).toBe(1);
    expect(errorLine(missing).code).toBe('FILE_NOT_FOUND');
  });
});

describe('psyops node create, interrupted (umask 000)', () => {
  let ws: string;
  // A mkfs.ext4 first on PATH that runs the real one, recording (in $FAKE_MKFS_LOG) the modes of the image it
  // writes and of the directory holding it, before and after; then it says so ($FAKE_MKFS_LOG.running) and
  // sleeps: the image complete in its temporary place, the command still running.
  const slowBin = join(root, 'slow-mkfs');
  const realMkfs = ['/usr/sbin/mkfs.ext4', '/sbin/mkfs.ext4'].find((path) => existsSync(path)) ?? 'mkfs.ext4';
  /** `psyops ARGS…` under `umask 000`, as a child to signal; `env` over a clean environment. */
  const spawnPsyops = (args: string[], env: Record<string, string> = {}) =>
    execa('sh', ['-c', 'umask 000 && exec "$0" "$@"', process.execPath, CLI, ...args], {
      cwd: ws,
      env: { PSYOPS_WORKSPACE: undefined, PSYOPS_MINISIGN_PASSWORD: undefined, SOURCE_DATE_EPOCH: undefined, ...env },
      stdin: 'ignore',
      // Its own process group, as a terminal's foreground job: Ctrl-C signals the whole group.
      detached: true,
      reject: false,
      timeout: 170_000,
    });

  beforeAll(async () => {
    ws = join(root, 'ws-interrupted');
    expect((await psyops(['init', ws, '--no-password'])).exitCode).toBe(0);
    await ok(ws, ['psynet', 'ca', 'init', '--name', 'psyops test']);
    mkdirSync(slowBin);
    writeFileSync(
      join(slowBin, 'mkfs.ext4'),
      `#!/bin/sh
prev= image=
for arg; do image=$prev; prev=$arg; done
snap() { echo "== $1"; stat -c '%a %F %n' "$(dirname "$image")" "$image" 2>&1; }
snap before >> "$FAKE_MKFS_LOG"
${realMkfs} "$@" || exit $?
snap after >> "$FAKE_MKFS_LOG"
touch "$FAKE_MKFS_LOG.running"
exec sleep 120
`,
      { mode: 0o755 },
    );
  });

  // SIGINT as Ctrl-C sends it, to the whole process group (mkfs.ext4 gets it too); SIGTERM as kill sends it, to psyops alone.
  for (const [signal, exitCode, group] of [
    ['SIGINT', 130, true],
    ['SIGTERM', 143, false],
  ] as const) {
    it(`${signal} (to ${group ? 'the process group' : 'psyops'}) while mkfs.ext4 writes the image: exit ${exitCode}, its temporary files removed, nothing written`, async () => {
      const log = join(root, `mkfs-${signal}.log`);
      const before = snapshot(ws);
      const child = spawnPsyops(['node', 'create', 'int-node', '--mac', MAC, '--out', 'secret.img'], {
        PATH: `${slowBin}:${process.env.PATH}`,
        FAKE_MKFS_LOG: log,
      });
      let exited = false;
      void child.finally(() => (exited = true));
      onTestFinished(() => {
        if (!exited) process.kill(-child.pid!, 'SIGKILL'); // a failed expectation leaves no command running
      });
      // Bounded: until mkfs.ext4 has written the image in its temporary place (or the command ended early).
      const deadline = Date.now() + 120_000;
      while (!existsSync(`${log}.running`) && !exited && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25));
      expect(existsSync(`${log}.running`), 'mkfs.ext4 ran').toBe(true);
      // What another user could see then: one temporary entry, closed to group and others (a 0700 directory).
      const during = listing(ws).filter((name) => !before.top.includes(name));
      expect(during).toHaveLength(1);
      expect.soft((statSync(join(ws, during[0]!)).mode & 0o777).toString(8), during[0]).toBe('700');
      expect.soft(during).toEqual([expect.stringMatching(/^\.secret\.img\.tmp-/)]);

      if (group) process.kill(-child.pid!, signal);
      else child.kill(signal);
      const result = await child;
      expect(result.exitCode, result.stderr).toBe(exitCode);
      expect(String(result.stdout)).toBe('');
      expect(errorLine({ exitCode, stdout: '', stderr: String(result.stderr) })).toEqual({
        code: 'INTERRUPTED',
        message: `interrupted by ${signal}: nothing was written (no secret volume, no change to nodes/int-node.json or the psynet registry)`,
      });
      // Nothing half-written: no image, no temporary directory, no definition, the registry and psynet/hosts as they were.
      expect(snapshot(ws)).toEqual(before);

      // While it ran, mkfs.ext4 wrote into a file that was 0600 from the start, in a 0700 directory, the umask 000 notwithstanding.
      const lines = readFileSync(log, 'utf8').trimEnd().split('\n');
      expect
        .soft(lines.map((line) => line.split(' ').slice(0, 2).join(' ')))
        .toEqual(['== before', '700 directory', '600 regular', '== after', '700 directory', '600 regular']);
    });
  }

  it('then creates the node as if nothing had happened (no --rekey needed): the image 0600', async () => {
    const result = await spawnPsyops(['node', 'create', 'int-node', '--mac', MAC, '--out', 'secret.img']);
    expect(result.exitCode, String(result.stderr)).toBe(0);
    expect(String(result.stdout)).toMatch(/^int-node: secret volume written to /);
    expect(statSync(join(ws, 'secret.img')).mode & 0o777).toBe(0o600);
    expect(listing(ws).filter((name) => name.includes('secret.img'))).toEqual(['secret.img']);
    expect(existsSync(join(ws, 'nodes', 'int-node.json'))).toBe(true);
  });
});

describe('psyops node state-image', () => {
  it('writes an empty ext4 image labelled psyops-state, outside any workspace; never replaces one without -f', async () => {
    const dir = join(root, 'state');
    mkdirSync(dir);
    const out = await psyops(['node', 'state-image', '--out', 'state.img', '--size', '8'], { cwd: dir });
    expect(out.exitCode, out.stderr).toBe(0);
    expect(out.stdout).toBe(`state volume written to ${join(dir, 'state.img')} (ext4 image labelled psyops-state, 8 MiB)\n`);
    const image = join(dir, 'state.img');
    expect(statSync(image).size).toBe(8 * 1024 * 1024);
    expect(statSync(image).mode & 0o777).toBe(0o600);
    const { stdout: label } = await run('e2label', [image], { timeout: 30_000 });
    expect(label.trim()).toBe('psyops-state');

    const refused = await psyops(['node', 'state-image', '--out', 'state.img'], { cwd: dir });
    expect(refused.exitCode).toBe(1);
    expect(errorLine(refused)).toEqual({ code: 'FILE_EXISTS', message: `refusing to overwrite ${image} (use -f to replace it)` });
    const tooSmall = await psyops(['node', 'state-image', '--out', 'small.img', '--size', 'lots'], { cwd: dir });
    expect(errorLine(tooSmall)).toMatchObject({ code: 'BAD_NODE_INPUT', message: expect.stringMatching(/whole number of MiB/) });
    expect(readdirSync(dir)).toEqual(['state.img']);
    expect((await psyops(['node', 'state-image', '--out', 'state.img', '-f'], { cwd: dir })).exitCode).toBe(0);
    expect(statSync(image).size).toBe(16 * 1024 * 1024);
  });

  it('--json: one JSON object on stdout, the human line on stderr', async () => {
    const dir = join(root, 'state-json');
    mkdirSync(dir);
    const result = await psyops(['node', 'state-image', '--out', 'state.img', '--size', '4', '--json'], { cwd: dir });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ path: join(dir, 'state.img'), label: 'psyops-state', sizeMiB: 4 });
    expect(result.stderr).toBe(`state volume written to ${join(dir, 'state.img')} (ext4 image labelled psyops-state, 4 MiB)\n`);
    expect(statSync(join(dir, 'state.img')).size).toBe(4 * 1024 * 1024);
  });
});
