import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { errorLine, listing, psyops, tempDir } from './helpers.ts';

const FIXTURES = join(import.meta.dirname, '..', '..', 'apkpkg', 'test', 'fixtures');
const EPOCH = { SOURCE_DATE_EPOCH: '1700000000' };

function exampleSpec(dir: string): string {
  mkdirSync(join(dir, 'root/usr/bin'), { recursive: true });
  writeFileSync(join(dir, 'root/usr/bin/hello'), '#!/bin/sh\necho hello\n');
  chmodSync(join(dir, 'root/usr/bin/hello'), 0o755);
  writeFileSync(join(dir, 'hello.post-install'), '#!/bin/sh\necho installed\n');
  const spec = join(dir, 'hello.json');
  writeFileSync(
    spec,
    JSON.stringify({
      name: 'hello',
      version: '1.2.3-r0',
      arch: 'x86_64',
      description: 'Says hello',
      url: 'https://example.org',
      license: 'MIT',
      depends: ['busybox'],
      tree: 'root',
      files: [{ path: 'etc/hello.conf', mode: '0644', content: 'greeting=hi\n' }],
      scripts: { 'post-install': 'hello.post-install' },
    }),
  );
  return spec;
}

describe('psyops apk', () => {
  it('keygen writes NAME-<hex>.rsa (0600) and .rsa.pub like abuild-keygen', async () => {
    const dir = tempDir('apk-keygen');
    const result = await psyops(['apk', 'keygen', '--name', 'ops@example.org', '--out', dir, '--bits', '2048']);
    expect(result.exitCode).toBe(0);
    const files = listing(dir);
    expect(files).toHaveLength(2);
    expect(files[0]).toMatch(/^ops@example\.org-[0-9a-f]{8}\.rsa$/);
    expect(files[1]).toBe(`${files[0]}.pub`);
    expect(statSync(join(dir, files[0]!)).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, files[0]!), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(readFileSync(join(dir, files[1]!), 'utf8')).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(result.stdout).not.toContain('BEGIN');
    const bad = await psyops(['apk', 'keygen', '--name', 'a b', '--out', dir]);
    expect(errorLine(bad).code).toBe('APK_BAD_KEY');
  });

  it('build + index + verify + info: a signed repository from the issue example spec', async () => {
    const dir = tempDir('apk-repo');
    const spec = exampleSpec(dir);
    const keys = join(dir, 'keys');
    mkdirSync(keys);
    copyFileSync(join(FIXTURES, 'psyops-test-65000000.rsa'), join(keys, 'psyops-test-65000000.rsa'));
    copyFileSync(join(FIXTURES, 'psyops-test-65000000.rsa.pub'), join(keys, 'psyops-test-65000000.rsa.pub'));
    const key = join(keys, 'psyops-test-65000000.rsa');
    const build = await psyops(['apk', 'build', spec, '--out', join(dir, 'repo/x86_64'), '--key', key], { env: EPOCH });
    expect(build.exitCode).toBe(0);
    expect(build.stdout).toMatch(/hello-1\.2\.3-r0\.apk \(\d+ bytes, signed by psyops-test-65000000\.rsa\.pub, C:Q1/);
    const apk = join(dir, 'repo/x86_64/hello-1.2.3-r0.apk');
    const first = readFileSync(apk);
    // Deterministic: the same spec and SOURCE_DATE_EPOCH rebuild identical bytes.
    expect((await psyops(['apk', 'build', spec, '--out', join(dir, 'again'), '--key', key], { env: EPOCH })).exitCode).toBe(0);
    expect(readFileSync(join(dir, 'again/hello-1.2.3-r0.apk')).equals(first)).toBe(true);

    // A noarch package next to it is indexed under x86_64.
    copyFileSync(join(FIXTURES, 'psyops-hello-1.0.0-r0.apk'), join(dir, 'repo/x86_64/psyops-hello-1.0.0-r0.apk'));
    const index = await psyops(['apk', 'index', join(dir, 'repo'), '--key', key, '--description', 'test repo'], { env: EPOCH });
    expect(index.stdout).toBe(`${join(dir, 'repo/x86_64/APKINDEX.tar.gz')}: 2 package(s), 2 read, signed by psyops-test-65000000.rsa.pub\n`);
    const again = await psyops(['apk', 'index', join(dir, 'repo'), '--key', key, '--description', 'test repo'], { env: EPOCH });
    expect(again.stdout).toContain('2 package(s), 0 read');

    const verify = await psyops(['apk', 'verify', apk, join(dir, 'repo/x86_64/APKINDEX.tar.gz'), '--keys-dir', keys]);
    expect(verify.exitCode).toBe(0);
    expect(verify.stdout).toBe(
      `${apk}: OK (signed by psyops-test-65000000.rsa.pub)\n${join(dir, 'repo/x86_64/APKINDEX.tar.gz')}: OK (signed by psyops-test-65000000.rsa.pub)\n`,
    );

    const info = await psyops(['apk', 'info', join(dir, 'repo/x86_64/APKINDEX.tar.gz'), '--json']);
    const parsed = JSON.parse(info.stdout) as { description: string; packages: { name: string; arch: string }[] };
    expect(parsed.description).toBe('test repo');
    expect(parsed.packages.map((p) => `${p.name}:${p.arch}`)).toEqual(['hello:x86_64', 'psyops-hello:x86_64']);
    const pkgInfo = await psyops(['apk', 'info', apk]);
    expect(pkgInfo.stdout).toContain('hello-1.2.3-r0 (x86_64): Says hello\n');
    expect(pkgInfo.stdout).toContain('depends: busybox /bin/sh\n');
    expect(pkgInfo.stdout).toContain('  0644 etc/hello.conf\n');
    const json = JSON.parse((await psyops(['apk', 'info', apk, '--json', '--keys-dir', keys])).stdout) as { trustedBy: string; scripts: string[] };
    expect(json).toMatchObject({ trustedBy: 'psyops-test-65000000.rsa.pub', scripts: ['.post-install'] });
  });

  it('verify and info read http(s) URLs', async () => {
    const keys = tempDir('apk-url-keys');
    copyFileSync(join(FIXTURES, 'psyops-test-65000000.rsa.pub'), join(keys, 'psyops-test-65000000.rsa.pub'));
    const server = createServer((req, res) => {
      const name = (req.url ?? '').split('/').pop()!;
      if (['APKINDEX.tar.gz', 'psyops-hello-1.0.0-r0.apk'].includes(name)) res.end(readFileSync(join(FIXTURES, name)));
      else res.writeHead(404).end();
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/x86_64`;
      const verify = await psyops(['apk', 'verify', `${base}/APKINDEX.tar.gz`, `${base}/psyops-hello-1.0.0-r0.apk`, '--keys-dir', keys]);
      expect(verify.stdout).toBe(
        `${base}/APKINDEX.tar.gz: OK (signed by psyops-test-65000000.rsa.pub)\n${base}/psyops-hello-1.0.0-r0.apk: OK (signed by psyops-test-65000000.rsa.pub)\n`,
      );
      const info = await psyops(['apk', 'info', `${base}/psyops-hello-1.0.0-r0.apk`]);
      expect(info.stdout).toContain('psyops-hello-1.0.0-r0 (noarch): Test package for psyops format notes\n');
      const missing = await psyops(['apk', 'info', `${base}/missing.apk`]);
      expect(errorLine(missing)).toEqual({ code: 'APK_FETCH_FAILED', message: `cannot fetch ${base}/missing.apk: HTTP 404` });
    } finally {
      await new Promise<void>((done) => server.close(() => done()));
    }
  });

  it('verify refuses tampered, unsigned and untrusted files with one-line typed errors', async () => {
    const dir = tempDir('apk-verify');
    const keys = join(dir, 'keys');
    mkdirSync(keys);
    copyFileSync(join(FIXTURES, 'psyops-test-65000000.rsa.pub'), join(keys, 'psyops-test-65000000.rsa.pub'));
    const good = join(FIXTURES, 'psyops-hello-1.0.0-r0.apk');
    expect((await psyops(['apk', 'verify', good, '--keys-dir', keys])).exitCode).toBe(0);

    const tampered = Buffer.from(readFileSync(good));
    tampered[900] = tampered[900]! ^ 0xff;
    writeFileSync(join(dir, 'tampered.apk'), tampered);
    const bad = await psyops(['apk', 'verify', join(dir, 'tampered.apk'), '--keys-dir', keys]);
    expect(bad.exitCode).toBe(1);
    // A flipped byte in the data member: its hash no longer matches the signed control's datahash, found before inflating it.
    expect(errorLine(bad).code).toBe('APK_CHECKSUM_MISMATCH');

    const empty = join(dir, 'nokeys');
    mkdirSync(empty);
    const untrusted = await psyops(['apk', 'verify', good, '--keys-dir', empty]);
    expect(errorLine(untrusted)).toEqual({
      code: 'APK_UNTRUSTED',
      message: `${good}: UNTRUSTED: signed by psyops-test-65000000.rsa.pub, not in the keys directory`,
    });
    const allowed = await psyops(['apk', 'verify', good, '--keys-dir', empty, '--allow-untrusted']);
    expect(allowed.stdout).toBe(`${good}: OK (UNTRUSTED, allowed)\n`);

    const missing = await psyops(['apk', 'verify', join(dir, 'missing.apk'), '--keys-dir', keys]);
    expect(errorLine(missing).code).toBe('FILE_NOT_FOUND');
    const noKeysDir = await psyops(['apk', 'verify', good], { cwd: dir }); // no --keys-dir and no workspace to take keys/apk from
    expect(noKeysDir.exitCode).toBe(1);
    expect(errorLine(noKeysDir).code).toBe('NO_WORKSPACE');
  });

  it('build refuses bad specs without writing anything, and demands a key or --unsigned', async () => {
    const dir = tempDir('apk-bad');
    const spec = exampleSpec(dir);
    const out = join(dir, 'out');
    const noKey = await psyops(['apk', 'build', spec, '--out', out], { cwd: dir });
    expect(errorLine(noKey).code).toBe('APK_KEY_MISSING');
    // A workspace whose config is broken says so, rather than "no workspace".
    writeFileSync(join(dir, 'psyops.config.json'), '{ broken');
    const brokenConfig = await psyops(['apk', 'build', spec, '--out', out], { cwd: dir });
    expect(errorLine(brokenConfig).code).toBe('BAD_CONFIG');
    rmSync(join(dir, 'psyops.config.json'));
    const cases: [Record<string, unknown>, string][] = [
      [{ version: '1.2.3-beta' }, 'INVALID_SPEC'],
      [{ name: 'Hello World' }, 'INVALID_SPEC'],
      [{ license: undefined }, 'INVALID_SPEC'],
      [{ files: [{ path: '../../etc/shadow', content: 'x' }] }, 'INVALID_SPEC'],
    ];
    const base = JSON.parse(readFileSync(spec, 'utf8')) as Record<string, unknown>;
    for (const [change, code] of cases) {
      writeFileSync(join(dir, 'bad.json'), JSON.stringify({ ...base, ...change }));
      const result = await psyops(['apk', 'build', join(dir, 'bad.json'), '--out', out, '--unsigned']);
      expect(errorLine(result).code).toBe(code);
    }
    writeFileSync(join(dir, 'bad.yaml'), 'name: [unclosed\n');
    const badYaml = await psyops(['apk', 'build', join(dir, 'bad.yaml'), '--out', out, '--unsigned']);
    expect(errorLine(badYaml).message).toMatch(/bad\.yaml is not valid YAML/);
    expect(readdirSync(dir)).not.toContain('out');
    // The same spec as YAML gives the same package as the JSON one.
    writeFileSync(
      join(dir, 'hello.yaml'),
      'name: hello\nversion: 1.2.3-r0\narch: x86_64\ndescription: Says hello\nurl: https://example.org\nlicense: MIT\n' +
        'depends: [busybox]\ntree: root\nfiles:\n  - { path: etc/hello.conf, mode: "0644", content: "greeting=hi\\n" }\n' +
        'scripts:\n  post-install: hello.post-install\n',
    );
    expect((await psyops(['apk', 'build', join(dir, 'hello.yaml'), '--out', join(dir, 'yaml'), '--unsigned'], { env: EPOCH })).exitCode).toBe(0);
    expect((await psyops(['apk', 'build', spec, '--out', join(dir, 'json'), '--unsigned'], { env: EPOCH })).exitCode).toBe(0);
    expect(readFileSync(join(dir, 'yaml/hello-1.2.3-r0.apk')).equals(readFileSync(join(dir, 'json/hello-1.2.3-r0.apk')))).toBe(true);
    const unsigned = await psyops(['apk', 'build', spec, '--out', out, '--unsigned'], { env: EPOCH });
    expect(unsigned.stdout).toContain('unsigned');
  });

  it('build uses the workspace key in keys/apk/ when no --key is given', async () => {
    const ws = tempDir('apk-ws');
    expect((await psyops(['init', ws, '--no-password'])).exitCode).toBe(0);
    expect((await psyops(['apk', 'keygen', '--name', 'ops@example.org', '--bits', '2048'], { cwd: ws })).exitCode).toBe(0);
    const keyFiles = listing(join(ws, 'keys/apk'));
    expect(keyFiles).toHaveLength(2);
    const spec = exampleSpec(ws);
    const result = await psyops(['apk', 'build', spec, '--out', join(ws, 'out')], { cwd: ws, env: EPOCH });
    expect(result.stdout).toContain(`signed by ${keyFiles[1]}`);
  });

  it('project builds signed psyopsOS-base and psyops-nodeboot from the workspace', async () => {
    const ws = tempDir('apk-project');
    expect((await psyops(['init', ws, '--no-password'])).exitCode).toBe(0);
    expect((await psyops(['apk', 'keygen', '--name', 'ops@example.org', '--bits', '2048'], { cwd: ws })).exitCode).toBe(0);
    writeFileSync(join(ws, 'keys/ssh-authorized-keys'), 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample op\n');
    writeFileSync(join(ws, 'keys/root-password.hash'), `$6$abcdefgh$${'x'.repeat(86)}\n`);
    const base = await psyops(['apk', 'project', 'psyopsOS-base'], { cwd: ws, env: EPOCH });
    expect(base.exitCode, base.stderr).toBe(0);
    const apk = join(ws, 'apk/x86_64/psyopsOS-base-1.0.1700000000-r0.apk');
    expect(base.stdout).toContain(`${apk} (`);
    const verified = await psyops(['apk', 'verify', apk], { cwd: ws }); // the workspace's keys/apk by default
    expect(verified.exitCode, verified.stderr).toBe(0);
    const info = JSON.parse((await psyops(['apk', 'info', apk, '--json', '--keys-dir', join(ws, 'keys/apk')])).stdout) as {
      trustedBy: string;
      files: { path: string; mode: number }[];
    };
    const keyName = listing(join(ws, 'keys/apk')).find((n) => n.endsWith('.pub'))!;
    expect(info.trustedBy).toBe(keyName);
    const files = Object.fromEntries(info.files.map((f) => [f.path, f.mode]));
    expect(files[`etc/apk/keys/${keyName}`]).toBe(0o644);
    expect(files['etc/psyopsOS/root-password.hash']).toBe(0o600);
    expect(files['etc/psyopsOS/authorized_keys']).toBe(0o600);
    expect(files['usr/sbin/psyopsOS-write-bootmedia']).toBe(0o755);

    writeFileSync(join(ws, 'nodeboot.mjs'), 'console.log("nodeboot");\n');
    const nodeboot = await psyops(['apk', 'project', 'psyops-nodeboot', '--bundle', join(ws, 'nodeboot.mjs')], { cwd: ws, env: EPOCH });
    expect(nodeboot.exitCode, nodeboot.stderr).toBe(0);
    expect(listing(join(ws, 'apk/x86_64'))).toEqual(['psyops-nodeboot-1.0.1700000000-r0.apk', 'psyopsOS-base-1.0.1700000000-r0.apk']);
    expect(errorLine(await psyops(['apk', 'project', 'psyops-nodeboot'], { cwd: ws })).code).toBe('FILE_NOT_FOUND');
    const usage = await psyops(['apk', 'project', 'other'], { cwd: ws });
    expect(usage.exitCode).toBe(2);
    expect(errorLine(usage).code).toBe('USAGE');
    writeFileSync(join(ws, 'keys/root-password.hash'), 'hunter2\n');
    expect(errorLine(await psyops(['apk', 'project', 'psyopsOS-base'], { cwd: ws })).code).toBe('INVALID_SPEC');
  });

  it('version prints <, = or > like apk version -t and rejects invalid versions', async () => {
    expect((await psyops(['apk', 'version', '1.0_rc1', '1.0'])).stdout).toBe('<\n');
    expect((await psyops(['apk', 'version', '1.0-r1', '1.0-r01'])).stdout).toBe('=\n');
    expect((await psyops(['apk', 'version', '1.0_p1', '1.0-r1'])).stdout).toBe('>\n');
    const invalid = await psyops(['apk', 'version', '1.0', 'abc']);
    expect(errorLine(invalid).code).toBe('INVALID_VERSION');
  });
});
