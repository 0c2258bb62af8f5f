import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, errorLine, psyops, tempDir } from './helpers.js';
// The same real S3 server (s3rver in its own process) the siteapi package's tests use.
import { startS3, type S3Server } from '../../siteapi/test/fixtures.ts';
// Update tars in the contract's format, as the siteapi tests make them.
import { slotTar } from '../../siteapi/test/update-tar.ts';

const dir = tempDir('cli-site');
const ws = join(dir, 'ws');
const at = (...parts: string[]) => join(ws, ...parts);
const S3_ENV = {
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
  AWS_REGION: undefined,
  // Never let the AWS credential chain look beyond the environment (no ~/.aws, no instance metadata).
  AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-aws-credentials'),
  AWS_CONFIG_FILE: join(dir, 'no-aws-config'),
  AWS_EC2_METADATA_DISABLED: 'true',
};

/** sha256 of every file under a folder, by relative path. */
function tree(root: string, suffix = ''): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith(suffix))
        out[relative(root, p).slice(0, suffix.length ? -suffix.length : undefined)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(root);
  return out;
}

// ---------- a real S3 server (s3rver) in its own process ----------
// (--openssl-legacy-provider: s3rver's listing continuation tokens use DES; see s3rver-process.mjs)
const DEPLOY_STATE = '.psyops-deploy-state.json';

/** key → sha256 of every object in a bucket, read from s3rver's data folder; the deploy's own state objects are left out. */
const bucket = (s3: S3Server, name: string) =>
  Object.fromEntries(Object.entries(tree(join(s3.directory, name), '._S3rver_object')).filter(([key]) => !key.endsWith(DEPLOY_STATE)));

let s3: S3Server;

beforeAll(async () => {
  const init = await psyops(['init', '--no-password', ws]);
  expect(init.exitCode, init.stderr).toBe(0);
  writeFileSync(at('nodes', 'node-1.json'), JSON.stringify({ config: { version: 7, packages: ['htop'], files: [{ path: '/etc/motd', content: 'hi\n' }] } }));
  mkdirSync(at('out'));
  writeFileSync(at('out', 'psyopsOS-2026.11.0-x86_64.iso'), Buffer.alloc(100_000, 3));
  writeFileSync(at('out', 'psyopsOS-2026.11.0-x86_64.json'), JSON.stringify({ version: '2026.11.0', kernel: '6.12.9', alpine: '3.22' }));
  // A real signed APK repository, made the way a user makes one.
  const env = { SOURCE_DATE_EPOCH: '1700000000' };
  writeFileSync(
    join(dir, 'pkg.json'),
    JSON.stringify({ name: 'hello', version: '1.0-r0', arch: 'x86_64', description: 'hello', url: 'https://example.org', license: 'MIT' }),
  );
  for (const args of [
    ['apk', 'keygen', '--name', 'test@example.org', '--bits', '2048'],
    ['apk', 'build', join(dir, 'pkg.json'), '--out', at('apk', 'x86_64')],
    ['apk', 'index', at('apk')],
  ]) {
    const run = await psyops(args, { cwd: ws, env });
    expect(run.exitCode, `${args.join(' ')}: ${run.stderr}`).toBe(0);
  }
  s3 = await startS3(['bucket', 'other']);
});

afterAll(async () => {
  await s3?.close();
});

describe('psyops site build', () => {
  it('builds the site from the workspace, signed with the workspace key; minisign verifies it', async () => {
    const result = await psyops(['site', 'build'], { cwd: ws, env: { SOURCE_DATE_EPOCH: '1700000000' } });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^site built: .*\/site \(\d+ files: 1 node\(s\), 1 OS image\(s\), APK repository for x86_64, 0 lighthouse\(s\)\)\n$/);
    const files = Object.keys(tree(at('site')));
    expect(files).toEqual(
      expect.arrayContaining([
        'nodes/node-1.json',
        'os/latest.json',
        'os/psyopsOS-2026.11.0-x86_64.iso.minisig',
        'apk/psyopsOS/x86_64/APKINDEX.tar.gz',
        'apk/psyopsOS/x86_64/hello-1.0-r0.apk',
        'manifest.json',
      ]),
    );
    const verified = await psyops([
      'apk',
      'verify',
      '--keys-dir',
      at('keys', 'apk'),
      at('site', 'apk/psyopsOS/x86_64/APKINDEX.tar.gz'),
      at('site', 'apk/psyopsOS/x86_64/hello-1.0-r0.apk'),
    ]);
    expect(verified.exitCode, verified.stderr).toBe(0);
    for (const doc of ['nodes/node-1.json', 'os/latest.json', 'index.json', 'manifest.json']) {
      const run = await execa('minisign', ['-V', '-p', at('keys', 'minisign.pub'), '-m', at('site', doc)], { reject: false, timeout: 30_000 });
      expect(run.exitCode, run.stderr).toBe(0);
      expect(run.stdout).toContain(`timestamp:1700000000\tfile:${doc}`);
    }
    const iso = await execa('minisign', ['-V', '-p', at('keys', 'minisign.pub'), '-m', at('site', 'os', 'psyopsOS-2026.11.0-x86_64.iso')], {
      reject: false,
      timeout: 30_000,
    });
    expect(iso.stdout).toContain('Trusted comment: filename=psyopsOS-2026.11.0-x86_64.iso version=2026.11.0 kernel=6.12.9 alpine=3.22');
  });

  it('rebuilding with no input change changes no byte; --out writes elsewhere', async () => {
    const before = tree(at('site'));
    const again = await psyops(['site', 'build'], { cwd: ws, env: { SOURCE_DATE_EPOCH: '1700000000' } });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(tree(at('site'))).toEqual(before);
    const elsewhere = await psyops(['site', 'build', '--out', join(dir, 'other-site')], { cwd: ws, env: { SOURCE_DATE_EPOCH: '1700000000' } });
    expect(elsewhere.exitCode, elsewhere.stderr).toBe(0);
    expect(tree(join(dir, 'other-site'))).toEqual(before);
  });

  it('--json prints one object about the site on stdout, the summary on stderr', async () => {
    const run = await psyops(['site', 'build', '--json'], { cwd: ws, env: { SOURCE_DATE_EPOCH: '1700000000' } });
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/^site built: .*\/site \(\d+ files: 1 node\(s\), 1 OS image\(s\), APK repository for x86_64, 0 lighthouse\(s\)\)\n$/);
    expect(run.stdout.endsWith('\n') && run.stdout.trimEnd().split('\n')).toHaveLength(1);
    expect(JSON.parse(run.stdout)).toEqual({
      outDir: at('site'),
      files: Object.keys(tree(at('site'))).length,
      nodes: ['node-1'],
      images: ['psyopsOS-2026.11.0-x86_64.iso'],
      updates: [],
      updatePointers: [],
      apkArchitectures: ['x86_64'],
      lighthouses: 0,
      lighthousesVersion: expect.any(Number),
      bumped: [],
    });
  });

  it('publishes the update tars of --images, signed here, with a pointer to the newest per architecture; reports them', async () => {
    const images = join(dir, 'images');
    mkdirSync(images);
    writeFileSync(join(images, 'psyopsOS-r9-x86_64.tar'), slotTar({ release: 'r9' }));
    writeFileSync(join(images, 'psyopsOS-r10-x86_64.tar'), slotTar({ release: 'r10' }));
    const out = join(dir, 'update-site');
    const run = await psyops(['site', 'build', '--images', images, '--out', out, '--json'], { cwd: ws, env: { SOURCE_DATE_EPOCH: '1700000000' } });
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/, no OS image, 2 update artifact\(s\) \(newest: r10 x86_64\), APK repository/);
    const json = JSON.parse(run.stdout);
    const tar = join(out, 'os', 'psyopsOS-r10-x86_64.tar');
    const comment = 'type=psyopsOS version=r10 filename=psyopsOS-r10-x86_64.tar kernel=6.12.1-0-virt alpine=3.22.2 arch=x86_64';
    expect(json.updates.map((u: { filename: string }) => u.filename)).toEqual(['psyopsOS-r10-x86_64.tar', 'psyopsOS-r9-x86_64.tar']);
    expect(json.updates[0]).toEqual({
      filename: 'psyopsOS-r10-x86_64.tar',
      path: 'os/psyopsOS-r10-x86_64.tar',
      version: 'r10',
      arch: 'x86_64',
      kernel: '6.12.1-0-virt',
      alpine: '3.22.2',
      size: statSync(tar).size,
      sha256: createHash('sha256').update(readFileSync(tar)).digest('hex'),
      trustedComment: comment,
    });
    expect(json.updatePointers).toEqual([{ path: 'os/update-x86_64.json', arch: 'x86_64', version: 'r10', filename: 'psyopsOS-r10-x86_64.tar' }]);
    const verified = await execa('minisign', ['-Vm', tar, '-p', at('keys', 'minisign.pub')], { timeout: 30_000 });
    expect(verified.stdout).toContain(`Trusted comment: ${comment}`);
    const pointer = await execa('minisign', ['-Vm', join(out, 'os', 'update-x86_64.json'), '-p', at('keys', 'minisign.pub')], { timeout: 30_000 });
    expect(pointer.stdout).toContain('Trusted comment: timestamp:1700000000\tfile:os/update-x86_64.json');

    writeFileSync(join(images, 'psyopsOS-r11-x86_64.tar'), slotTar({ release: 'r12' }));
    const refused = await psyops(['site', 'build', '--images', images, '--out', out], { cwd: ws });
    expect(refused.exitCode).toBe(1);
    expect(errorLine(refused)).toEqual({
      code: 'BAD_UPDATE_INPUT',
      message: `${join(images, 'psyopsOS-r11-x86_64.tar')} is not a psyopsOS update artifact: psyopsOS-slot.json says version r12, the file name r11`,
    });
  });

  it('publishes the psynet lighthouses from the registry with their public addresses', async () => {
    const config = JSON.parse(readFileSync(at('psyops.config.json'), 'utf8'));
    const registry = {
      version: 1,
      hosts: [
        { name: 'lighthouse1', role: 'lighthouse', ip: '10.10.8.1', groups: ['lighthouse'], created: '2026-01-01T00:00:00Z' },
        { name: 'node-1', role: 'node', ip: '10.10.10.1', groups: ['node'], created: '2026-01-01T00:00:00Z' },
      ],
      released: [],
    };
    writeFileSync(at('psynet', 'registry.json'), JSON.stringify(registry));
    try {
      const missing = await psyops(['site', 'build', '--out', join(dir, 'lh-site')], { cwd: ws });
      expect(missing.exitCode).toBe(2);
      expect(errorLine(missing)).toEqual({
        code: 'USAGE',
        message:
          'lighthouse lighthouse1 has no public address: add it to psynet.lighthouses in psyops.config.json, or create it with psyops node create lighthouse1 --lighthouse HOST:PORT',
      });
      writeFileSync(at('psyops.config.json'), JSON.stringify({ ...config, psynet: { ...config.psynet, lighthouses: { lighthouse1: ['198.51.100.7:4242'] } } }));
      const built = await psyops(['site', 'build', '--out', join(dir, 'lh-site')], { cwd: ws });
      expect(built.exitCode, built.stderr).toBe(0);
      expect(JSON.parse(readFileSync(join(dir, 'lh-site', 'psynet', 'lighthouses.json'), 'utf8')).lighthouses).toEqual([
        { name: 'lighthouse1', overlayIp: '10.10.8.1', publicAddresses: ['198.51.100.7:4242'] },
      ]);
    } finally {
      rmSync(at('psynet', 'registry.json'));
      writeFileSync(at('psyops.config.json'), JSON.stringify(config, null, 2));
    }
  });

  it('publishes psyopsOS lighthouses at the underlay endpoints their definitions record, then the addresses psyops.config.json adds', async () => {
    const config = JSON.parse(readFileSync(at('psyops.config.json'), 'utf8'));
    const host = (name: string, role: string, ip: string) => ({ name, role, ip, groups: [role], created: '2026-01-01T00:00:00Z' });
    writeFileSync(
      at('psynet', 'registry.json'),
      JSON.stringify({
        version: 1,
        hosts: [
          host('lh-both', 'lighthouse', '10.10.8.2'),
          host('lh-node', 'lighthouse', '10.10.8.3'),
          host('lh-vps', 'lighthouse', '10.10.8.1'),
          host('node-1', 'node', '10.10.10.1'),
        ],
        released: [],
      }),
    );
    const lighthouse = (underlay: string[]) => JSON.stringify({ psynet: { role: 'lighthouse', underlay }, config: { version: 1 } });
    writeFileSync(at('nodes', 'lh-node.json'), lighthouse(['192.168.77.3:4242', '[2001:db8::3]:4242']));
    writeFileSync(at('nodes', 'lh-both.json'), lighthouse(['192.168.77.2:4242']));
    const withConfigured = (lighthouses: Record<string, string[]>) =>
      writeFileSync(at('psyops.config.json'), JSON.stringify({ ...config, psynet: { ...config.psynet, lighthouses } }));
    // lh-both is a psyopsOS lighthouse also reached at a public (NATed) address: the config adds it after its own, each address once.
    withConfigured({ 'lh-vps': ['198.51.100.7:4242'], 'lh-both': ['203.0.113.2:4242', '192.168.77.2:4242'] });
    const out = join(dir, 'lh-node-site');
    try {
      const built = await psyops(['site', 'build', '--out', out], { cwd: ws });
      expect(built.exitCode, built.stderr).toBe(0);
      expect(built.stdout).toMatch(/, 3 lighthouse\(s\)\)\n$/);
      expect(JSON.parse(readFileSync(join(out, 'psynet', 'lighthouses.json'), 'utf8')).lighthouses).toEqual([
        { name: 'lh-both', overlayIp: '10.10.8.2', publicAddresses: ['192.168.77.2:4242', '203.0.113.2:4242'] },
        { name: 'lh-node', overlayIp: '10.10.8.3', publicAddresses: ['192.168.77.3:4242', '[2001:db8::3]:4242'] },
        { name: 'lh-vps', overlayIp: '10.10.8.1', publicAddresses: ['198.51.100.7:4242'] },
      ]);
      const verified = await execa('minisign', ['-V', '-p', at('keys', 'minisign.pub'), '-m', join(out, 'psynet', 'lighthouses.json')], {
        reject: false,
        timeout: 30_000,
      });
      expect(verified.exitCode, verified.stderr).toBe(0);

      // Without psyops.config.json's address the registry-only lighthouse has none: still an error.
      withConfigured({});
      const missing = await psyops(['site', 'build', '--out', out], { cwd: ws });
      expect(errorLine(missing)).toMatchObject({ code: 'USAGE', message: expect.stringMatching(/^lighthouse lh-vps has no public address: /) });
      withConfigured({ 'lh-vps': ['198.51.100.7:4242'] });

      // A definition that makes a lighthouse of what the registry calls a node, or does not know, is refused; so is a bad endpoint.
      const refusals: [string, string, string, RegExp][] = [
        [
          'node-1',
          lighthouse(['192.168.77.9:4242']),
          'USAGE',
          /node-1\.json makes node-1 a lighthouse, but the psynet registry has it as a node: fix or remove its psynet section$/,
        ],
        ['lh-gone', lighthouse(['192.168.77.9:4242']), 'USAGE', /lh-gone\.json makes lh-gone a lighthouse, but the psynet registry has no such host/],
        [
          'lh-node',
          lighthouse(['192.168.77.3']),
          'BAD_NODE_DEFINITION',
          /lh-node\.json: psynet\.underlay: lighthouse endpoint "192\.168\.77\.3" is not HOST:PORT \(no port\)$/,
        ],
      ];
      const node1 = readFileSync(at('nodes', 'node-1.json'), 'utf8');
      const lhNode = readFileSync(at('nodes', 'lh-node.json'), 'utf8');
      for (const [name, definition, code, message] of refusals) {
        writeFileSync(at('nodes', `${name}.json`), definition);
        const refused = await psyops(['site', 'build', '--out', out], { cwd: ws });
        expect(refused.exitCode, name).toBe(code === 'USAGE' ? 2 : 1);
        expect(errorLine(refused)).toMatchObject({ code, message: expect.stringMatching(message) });
        writeFileSync(at('nodes', 'node-1.json'), node1);
        writeFileSync(at('nodes', 'lh-node.json'), lhNode);
        rmSync(at('nodes', 'lh-gone.json'), { force: true });
      }
    } finally {
      rmSync(at('psynet', 'registry.json'));
      for (const name of ['lh-node', 'lh-both', 'lh-gone']) rmSync(at('nodes', `${name}.json`), { force: true });
      writeFileSync(at('psyops.config.json'), JSON.stringify(config, null, 2));
    }
  });

  it('refuses a bad node definition in one line and leaves the site as it was', async () => {
    const before = tree(at('site'));
    writeFileSync(at('nodes', 'broken.json'), '{"config": {"version": "seven"}}');
    try {
      const result = await psyops(['site', 'build'], { cwd: ws });
      expect(result.exitCode).toBe(1);
      const error = errorLine(result);
      expect(error.code).toBe('BAD_NODE_DEFINITION');
      expect(error.message).toContain('broken.json: config.version');
      expect(tree(at('site'))).toEqual(before);
      expect(readdirSync(ws).filter((n) => n.startsWith('.site'))).toEqual([]);
    } finally {
      rmSync(at('nodes', 'broken.json'));
    }
  });

  it('a config changed at an unchanged version is refused; --bump-versions publishes the next version and says so; --valid-for sets an expiry', async () => {
    const file = at('nodes', 'node-1.json');
    const original = readFileSync(file, 'utf8');
    const before = tree(at('site'));
    try {
      writeFileSync(file, original.replace('hi\\n', 'changed\\n'));
      const refused = await psyops(['site', 'build'], { cwd: ws });
      expect(refused.exitCode).toBe(1);
      expect(errorLine(refused)).toMatchObject({ code: 'BAD_NODE_DEFINITION' });
      expect(errorLine(refused).message).toMatch(
        /node-1\.json: the config of node-1 changed since the site in .* was built .*Raise config\.version to 8, or build with --bump-versions$/,
      );
      expect(tree(at('site'))).toEqual(before);

      const bumped = await psyops(['site', 'build', '--bump-versions', '--valid-for', '30d'], { cwd: ws, env: { SOURCE_DATE_EPOCH: '1700000000' } });
      expect(bumped.exitCode, bumped.stderr).toBe(0);
      expect(bumped.stderr).toBe('note: node node-1 published as version 8 (nodes/node-1.json says 7)\n');
      expect(JSON.parse(readFileSync(at('site', 'nodes', 'node-1.json'), 'utf8')).version).toBe(8);
      const verified = await execa('minisign', ['-V', '-p', at('keys', 'minisign.pub'), '-m', at('site', 'nodes', 'node-1.json')]);
      expect(verified.stdout).toContain(`Trusted comment: timestamp:1700000000\tfile:nodes/node-1.json\texpires:${1_700_000_000 + 30 * 86_400}`);

      for (const bad of ['30', '0d', '-1h', '1y', '']) {
        const usage = await psyops(['site', 'build', '--valid-for', bad], { cwd: ws });
        expect(usage.exitCode, bad).not.toBe(0);
        expect(errorLine(usage), bad).toEqual({
          code: 'USAGE',
          message: `--valid-for must be a positive duration such as 30d, 12h, 90m or 3600s, got "${bad}"`,
        });
      }
    } finally {
      writeFileSync(file, original);
      rmSync(at('site', 'nodes', 'node-1.json'));
      const rebuilt = await psyops(['site', 'build'], { cwd: ws, env: { SOURCE_DATE_EPOCH: '1700000000' } });
      expect(rebuilt.exitCode, rebuilt.stderr).toBe(0);
      expect(tree(at('site'))).toEqual(before);
    }
  });

  it('asks for the key password like every signing command, and fails cleanly without one', async () => {
    const locked = join(dir, 'locked');
    const made = await psyops(['init', locked], { env: { PSYOPS_MINISIGN_PASSWORD: 'pw' } });
    expect(made.exitCode, made.stderr).toBe(0);
    const refused = await psyops(['site', 'build'], { cwd: locked });
    expect(refused.exitCode).toBe(1);
    expect(errorLine(refused).code).toBe('PASSWORD_REQUIRED');
    expect(readdirSync(locked)).not.toContain('site');
    const wrong = await psyops(['site', 'build'], { cwd: locked, env: { PSYOPS_MINISIGN_PASSWORD: 'nope' } });
    expect(errorLine(wrong).code).toBe('WRONG_PASSWORD');
  });

  it('outside a workspace says so in one line', async () => {
    const result = await psyops(['site', 'build'], { cwd: dir });
    expect(errorLine(result).code).toBe('NO_WORKSPACE');
  });
});

describe('psyops site deploy (against s3rver on 127.0.0.1)', () => {
  const deploy = (args: string[], env: Record<string, string | undefined> = {}) =>
    psyops(['site', 'deploy', '--bucket', 'bucket', '--endpoint', s3.endpoint, '--prefix', 'prod', ...args], { cwd: ws, env: { ...S3_ENV, ...env } });

  it('first deploy uploads all, a second nothing, one changed file exactly one', async () => {
    const files = tree(at('site'));
    const first = await deploy([]);
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stdout).toMatch(
      new RegExp(
        `^deployed ${at('site')} to s3://bucket/prod/: ${Object.keys(files).length} uploaded, 0 unchanged, 0 deleted \\([\\d.]+ (?:KiB|MiB) sent\\)\n$`,
      ),
    );
    expect(bucket(s3, 'bucket')).toEqual(Object.fromEntries(Object.entries(files).map(([k, v]) => [`prod/${k}`, v])));
    expect(existsSync(join(s3.directory, 'bucket', 'prod', `${DEPLOY_STATE}._S3rver_object`))).toBe(true);

    const second = await deploy([]);
    expect(second.stdout).toContain(': 0 uploaded');

    const node = at('nodes', 'node-1.json');
    writeFileSync(node, JSON.stringify({ config: { version: 8, packages: ['htop'] } }));
    await psyops(['site', 'build'], { cwd: ws, env: { SOURCE_DATE_EPOCH: '1700000000' } });
    const changed = await deploy(['--dry-run']);
    expect(
      changed.stdout
        .split('\n')
        .filter((l) => l.startsWith('upload '))
        .map((l) => l.split(' ')[1])
        .sort(),
    ).toEqual(['prod/manifest.json', 'prod/manifest.json.minisig', 'prod/nodes/node-1.json', 'prod/nodes/node-1.json.minisig']);
    const one = await deploy([]);
    expect(one.stdout).toContain(': 4 uploaded');
    expect(bucket(s3, 'bucket')['prod/nodes/node-1.json']).toBe(tree(at('site'))['nodes/node-1.json']);
  });

  it('--json prints one object about what went up; progress is a line per uploaded file with its size, and on a terminal a live line of files and bytes', async () => {
    const sizes = Object.fromEntries(Object.keys(tree(at('site'))).map((key) => [`progress/${key}`, statSync(at('site', key)).size]));
    const total = Object.values(sizes).reduce((sum, size) => sum + size, 0);
    const args = ['site', 'deploy', '--bucket', 'bucket', '--endpoint', s3.endpoint];
    const run = await psyops([...args, '--prefix', 'progress', '--json'], { cwd: ws, env: S3_ENV });
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout.endsWith('\n') && run.stdout.trimEnd().split('\n')).toHaveLength(1);
    const json = JSON.parse(run.stdout);
    expect(json).toEqual({
      dir: at('site'),
      target: 's3://bucket/progress/',
      dryRun: false,
      uploads: expect.any(Array),
      bytes: total,
      unchanged: 0,
      deletions: [],
    });
    expect(Object.fromEntries(json.uploads.map((u: { key: string; size: number }) => [u.key, u.size]))).toEqual(sizes);
    expect(json.uploads.every((u: { reason: string }) => u.reason === 'new')).toBe(true);
    // Piped: no live line; the plan, one line per file as it went up, and the summary.
    expect(run.stderr).not.toContain('\r');
    const lines = run.stderr.trimEnd().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^s3://bucket/progress/: ${json.uploads.length} to upload \\([\\d.]+ (?:KiB|MiB)\\), 0 unchanged, 0 to delete$`));
    const uploaded = lines.slice(1, -1).map((line) => /^upload: (\S+) \((\d+ B|[\d.]+ KiB|[\d.]+ MiB)\)$/.exec(line)?.[1]);
    expect(uploaded.sort()).toEqual(Object.keys(sizes).sort());
    expect(lines.at(-1)).toMatch(/^deployed .* to s3:\/\/bucket\/progress\/: \d+ uploaded, 0 unchanged, 0 deleted \([\d.]+ (?:KiB|MiB) sent\)$/);
    const again = await psyops([...args, '--prefix', 'progress', '--json', '--dry-run'], { cwd: ws, env: S3_ENV });
    expect(JSON.parse(again.stdout)).toMatchObject({ dryRun: true, uploads: [], bytes: 0, unchanged: json.uploads.length, deletions: [] });

    // On a terminal (script(1) gives it one): a live line with the files and bytes sent so far.
    const command = [process.execPath, CLI, ...args, '--prefix', 'progress-tty', '--concurrency', '1'].map((arg) => JSON.stringify(arg)).join(' ');
    const tty = await execa('script', ['-q', '-e', '-c', command, '/dev/null'], { cwd: ws, env: S3_ENV, reject: false, timeout: 60_000 });
    expect(tty.exitCode, tty.stdout).toBe(0);
    // What the terminal got, "erase line" spelled out: `\r<EL>` starts each redraw of the live line.
    const screen = tty.stdout.replaceAll('\u001b[K', '<EL>');
    const live = [...screen.matchAll(/\r<EL>site deploy: uploading \d+\.\d s: (\d+)\/(\d+) files, ([\d.]+ (?:B|KiB|MiB)) of ([\d.]+ (?:KiB|MiB))/g)];
    expect([...new Set(live.map((match) => Number(match[1])))]).toEqual([...Array(json.uploads.length).keys()]);
    expect(new Set(live.map((match) => match[2]))).toEqual(new Set([String(json.uploads.length)]));
    expect(live[0]![3]).toBe('0 B');
    // The live line is cleared before the summary.
    expect(screen).toMatch(new RegExp(`\\r<EL>deployed .* to s3://bucket/progress-tty/: ${json.uploads.length} uploaded, `));
  });

  it('--dry-run prints the plan and changes nothing', async () => {
    writeFileSync(at('site', 'extra.txt'), 'new file\n');
    try {
      const before = bucket(s3, 'bucket');
      const result = await deploy(['--dry-run', '--delete']);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stdout).toBe(
        `upload prod/extra.txt (new, 9 bytes)\ndry run, nothing changed: 1 to upload, ${Object.keys(tree(at('site'))).length - 1} unchanged, 0 to delete (s3://bucket/prod/)\n`,
      );
      expect(bucket(s3, 'bucket')).toEqual(before);
    } finally {
      rmSync(at('site', 'extra.txt'));
    }
  });

  it('--delete removes exactly the stale keys under the prefix, nothing else', async () => {
    // Stale objects: one under the prefix from an older site, and neighbours that must survive.
    mkdirSync(join(dir, 'stale', 'old'), { recursive: true });
    writeFileSync(join(dir, 'stale', 'old', 'gone.json'), '{}');
    writeFileSync(join(dir, 'stale', 'index.json'), '{}');
    const seed = (prefix: string, b = 'bucket') =>
      psyops(['site', 'deploy', join(dir, 'stale'), '--bucket', b, '--endpoint', s3.endpoint, '--prefix', prefix], { env: S3_ENV });
    for (const p of ['prod/legacy', 'production', 'staging']) expect((await seed(p)).exitCode).toBe(0);
    expect((await seed('prod', 'other')).exitCode).toBe(0);
    const before = bucket(s3, 'bucket');
    const otherBefore = bucket(s3, 'other');

    const kept = await deploy([]);
    expect(kept.stdout).toContain('0 deleted');
    expect(bucket(s3, 'bucket')).toEqual(before);

    const result = await deploy(['--delete']);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toContain(': 0 uploaded');
    expect(result.stdout).toContain('3 deleted'); // gone.json, index.json and prod/legacy's deploy state
    const expected = { ...before };
    delete expected['prod/legacy/old/gone.json'];
    delete expected['prod/legacy/index.json'];
    expect(bucket(s3, 'bucket')).toEqual(expected);
    expect(bucket(s3, 'other')).toEqual(otherBefore);
  });

  it('a deploy killed half-way and run again converges to the same bucket as an uninterrupted one', async () => {
    const big = join(dir, 'big-site');
    for (let i = 0; i < 150; i++) {
      mkdirSync(join(big, 'files'), { recursive: true });
      writeFileSync(join(big, 'files', `f${String(i).padStart(3, '0')}.bin`), Buffer.alloc(20_000, i));
    }
    writeFileSync(join(big, 'index.json'), '{"pointer":true}\n');
    const args = (prefix: string) => ['site', 'deploy', big, '--bucket', 'bucket', '--endpoint', s3.endpoint, '--prefix', prefix, '--concurrency', '1'];

    const reference = await psyops(args('reference'), { env: S3_ENV });
    expect(reference.exitCode, reference.stderr).toBe(0);

    const createdBefore = s3.created.length;
    const child = execa('node', [CLI, ...args('killed')], { env: S3_ENV, reject: false, timeout: 60_000 });
    for (let i = 0; i < 600 && s3.created.length - createdBefore < 20; i++) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGKILL');
    const killed = await child;
    expect(killed.signal).toBe('SIGKILL');
    const partial = Object.keys(bucket(s3, 'bucket')).filter((k) => k.startsWith('killed/'));
    expect(partial.length).toBeGreaterThanOrEqual(20);
    expect(partial.length).toBeLessThan(151);
    expect(partial).not.toContain('killed/index.json'); // the pointer goes last

    const resumed = await psyops(args('killed'), { env: S3_ENV });
    expect(resumed.exitCode, resumed.stderr).toBe(0);
    const uploaded = Number(/: (\d+) uploaded/.exec(resumed.stdout)![1]);
    expect(uploaded).toBeLessThanOrEqual(151 - partial.length + 1 + 1); // the rest, plus at most the object in flight
    const strip = (prefix: string) =>
      Object.fromEntries(
        Object.entries(bucket(s3, 'bucket'))
          .filter(([k]) => k.startsWith(prefix))
          .map(([k, v]) => [k.slice(prefix.length), v]),
      );
    expect(strip('killed/')).toEqual(strip('reference/'));
    expect(Object.keys(strip('killed/'))).toHaveLength(151);
  });

  it('a missing bucket, missing credentials, a bad prefix: one clear line each', async () => {
    const missing = await psyops(['site', 'deploy', '--bucket', 'nobucket', '--endpoint', s3.endpoint], { cwd: ws, env: S3_ENV });
    expect(errorLine(missing)).toEqual({ code: 'BUCKET_NOT_FOUND', message: `bucket "nobucket" does not exist at ${s3.endpoint}` });
    const noCredentials = await psyops(['site', 'deploy', '--bucket', 'bucket', '--endpoint', s3.endpoint], {
      cwd: ws,
      env: { ...S3_ENV, AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, AWS_PROFILE: undefined },
    });
    expect(errorLine(noCredentials).code).toBe('NO_AWS_CREDENTIALS');
    const wrongCredentials = await deploy([], { AWS_ACCESS_KEY_ID: 'NOT-S3RVER' });
    expect(errorLine(wrongCredentials).code).toBe('BUCKET_ACCESS_DENIED');
    const badPrefix = await deploy(['--prefix', '../escape']);
    expect(errorLine(badPrefix).code).toBe('BAD_DEPLOY_OPTIONS');
    const noSite = await psyops(['site', 'deploy', join(dir, 'nothing-here'), '--bucket', 'bucket', '--endpoint', s3.endpoint], { env: S3_ENV });
    expect(errorLine(noSite).code).toBe('FILE_NOT_FOUND');
    const noBucket = await psyops(['site', 'deploy'], { cwd: ws, env: S3_ENV });
    expect(noBucket.exitCode).toBe(2);
    expect(errorLine(noBucket).code).toBe('USAGE');
  });
});

describe('psyops site serve', () => {
  it('serves the site on 127.0.0.1; a signed document it serves verifies with the workspace public key', async () => {
    const server = execa('node', [CLI, 'site', 'serve', '--port', '0'], { cwd: ws, reject: false, timeout: 60_000, buffer: false });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        server.stdout!.on('data', (chunk: Buffer) => {
          const match = /^serving .* at (http:\/\/127\.0\.0\.1:\d+\/)\n/.exec(chunk.toString());
          if (match) resolve(match[1]!);
        });
        setTimeout(() => reject(new Error('site serve printed no URL within 20 s')), 20_000).unref();
      });
      const fetched = join(dir, 'fetched');
      mkdirSync(fetched, { recursive: true });
      for (const name of ['node-1.json', 'node-1.json.minisig']) {
        const response = await fetch(`${url}nodes/${name}`);
        expect(response.status).toBe(200);
        writeFileSync(join(fetched, name), Buffer.from(await response.arrayBuffer()));
      }
      const run = await execa('minisign', ['-V', '-p', at('keys', 'minisign.pub'), '-m', join(fetched, 'node-1.json')], { reject: false, timeout: 30_000 });
      expect(run.exitCode, run.stderr).toBe(0);
      const missing = await fetch(`${url}nodes/nobody.json`);
      expect(missing.status).toBe(404);
      expect(await missing.text()).toContain('Not found');
    } finally {
      server.kill('SIGTERM');
    }
    const ended = await server;
    expect(ended.exitCode).toBe(0);
  });

  it('logs each request on stderr: time, client, method, path, status and bytes sent', async () => {
    const server = execa('node', [CLI, 'site', 'serve', '--port', '0'], { cwd: ws, reject: false, timeout: 60_000, buffer: false });
    let log = '';
    server.stderr!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
    });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        server.stdout!.on('data', (chunk: Buffer) => {
          const match = /^serving .* at (http:\/\/127\.0\.0\.1:\d+\/)\n/.exec(chunk.toString());
          if (match) resolve(match[1]!);
        });
        setTimeout(() => reject(new Error('site serve printed no URL within 20 s')), 20_000).unref();
      });
      expect(log).toBe('');
      expect((await (await fetch(`${url}nodes/node-1.json`)).arrayBuffer()).byteLength).toBe(statSync(at('site', 'nodes', 'node-1.json')).size);
      await (await fetch(`${url}nodes/nobody.json`)).arrayBuffer();
      await (await fetch(`${url}os/psyopsOS-2026.11.0-x86_64.iso`, { headers: { Range: 'bytes=10-19' } })).arrayBuffer();
      await fetch(`${url}index.json`, { method: 'HEAD' });
      for (let i = 0; i < 200 && log.split('\n').length < 5; i++) await new Promise((r) => setTimeout(r, 25));
    } finally {
      server.kill('SIGTERM');
    }
    await server;
    const time = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z 127\\.0\\.0\\.1';
    expect(log.trimEnd().split('\n')).toEqual([
      expect.stringMatching(new RegExp(`^${time} GET /nodes/node-1\\.json 200 ${statSync(at('site', 'nodes', 'node-1.json')).size}$`)),
      expect.stringMatching(new RegExp(`^${time} GET /nodes/nobody\\.json 404 ${statSync(at('site', 'error.html')).size}$`)),
      expect.stringMatching(new RegExp(`^${time} GET /os/psyopsOS-2026\\.11\\.0-x86_64\\.iso 206 10$`)),
      expect.stringMatching(new RegExp(`^${time} HEAD /index\\.json 200 0$`)),
    ]);
  });

  it('refuses a port that is not a number', async () => {
    const result = await psyops(['site', 'serve', '--port', 'eighty'], { cwd: ws });
    expect(errorLine(result).code).toBe('USAGE');
  });
});
