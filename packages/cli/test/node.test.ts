import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { errorLine, listing, psyops, tempDir } from './helpers.js';

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

const snapshot = (ws: string) => ({
  top: listing(ws),
  nodes: listing(join(ws, 'nodes')),
  registry: readFileSync(join(ws, 'psynet', 'registry.json'), 'utf8'),
  hosts: existsSync(join(ws, 'psynet', 'hosts')) ? listing(join(ws, 'psynet', 'hosts')) : [],
});

describe('psyops node create', () => {
  let ws: string;
  beforeAll(async () => {
    ws = join(root, 'ws');
    expect((await psyops(['init', ws, '--no-password'])).exitCode).toBe(0);
    await ok(ws, ['psynet', 'ca', 'init', '--name', 'psyops test']);
    await ok(ws, ['psynet', 'allocate', 'placeholder', '--role', 'node']);
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

  it('writes a folder with --dir, keeps a hand-written config, and replaces output only with -f', async () => {
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

    const refused = await psyops(['node', 'create', 'node2', '--mac', 'aa:bb:cc:dd:ee:ff', '--dir', 'node2-secret'], { cwd: ws });
    expect(refused.exitCode).toBe(1);
    expect(errorLine(refused)).toEqual({ code: 'FILE_EXISTS', message: `refusing to overwrite ${dir} (use -f to replace it)` });
    expect(readFileSync(join(dir, 'age.key'), 'utf8')).toBe(ageKey);

    await ok(ws, ['node', 'create', 'node2', '--mac', 'aa:bb:cc:dd:ee:ff', '--dir', 'node2-secret', '-f']);
    expect(readFileSync(join(dir, 'age.key'), 'utf8')).not.toBe(ageKey);
    const second = JSON.parse(readFileSync(join(ws, 'nodes', 'node2.json'), 'utf8'));
    expect(second.config).toEqual(config);
    expect(second.ageRecipient).not.toBe(first.ageRecipient);
    expect(second.psynetAddress).toBe(first.psynetAddress);

    const image = await psyops(['node', 'create', 'test-node-1', '--mac', MAC, '--out', 'secret.img'], { cwd: ws });
    expect(errorLine(image).code).toBe('FILE_EXISTS');
  });

  it('a bad MAC, name or option is one line and writes nothing', async () => {
    const before = snapshot(ws);
    const cases: [string[], string, RegExp][] = [
      [['node', 'create', 'n3', '--mac', '52:54:00:12:34', '--out', 'n3.img'], 'BAD_NODE_INPUT', /"52:54:00:12:34" is not a MAC address/],
      [['node', 'create', 'Bad_Name', '--mac', MAC, '--out', 'n3.img'], 'BAD_NODE_INPUT', /node name "Bad_Name"/],
      [['node', 'create', 'n3', '--mac', MAC], 'USAGE', /exactly one of --out IMAGE and --dir DIR/],
      [['node', 'create', 'n3', '--mac', MAC, '--out', 'a.img', '--dir', 'b'], 'USAGE', /exactly one of/],
      [['node', 'create', 'n3', '--mac', MAC, '--site-url', 'ftp://x', '--out', 'n3.img'], 'BAD_NODE_INPUT', /not an http\(s\) URL/],
      [['node', 'create', 'n3', '--mac', MAC, '--interfaces', 'missing.txt', '--out', 'n3.img'], 'FILE_NOT_FOUND', /interfaces file/],
    ];
    for (const [args, code, message] of cases) {
      const result = await psyops(args, { cwd: ws });
      expect(result.exitCode, args.join(' ')).toBe(1);
      const line = errorLine(result);
      expect(line.code, line.message).toBe(code);
      expect(line.message).toMatch(message);
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
    const missing = await psyops(['node', 'status', '--root', join(root, 'nowhere')]);
    expect(missing.exitCode).toBe(1);
    expect(errorLine(missing).code).toBe('FILE_NOT_FOUND');
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
});
