import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildPackage, extractPackage, generateApkKey, indexRepository, psyopsBaseSpec, readPackage, type ApkKeyPair, type PackageSpec } from '@psyops/apkpkg';
import { formatInstalledDb, formatScriptsTar, installedPackageOf, parseInstalledDb } from '@psyops/apkpkg/format';
import { TempRootSystem } from '../src/index.js';
import { makeOpsCommands } from '../src/ops/commands.js';
import { runUpgrade } from '../src/ops/upgrade.js';
import { tempDir } from './fixtures.js';
import { serveDir } from './ops-helpers.js';

const EPOCH = 1_700_000_000;
const ARCH = 'x86_64';

function hello(version: string, files: PackageSpec['files']): PackageSpec {
  return { name: 'hello', version, arch: 'noarch', description: 'hello', url: 'https://example.org', license: 'MIT', files };
}

const HELLO_1 = hello('1.0-r0', [
  { path: 'etc/hello.conf', mode: '0644', content: 'greeting=1\n' },
  { path: 'usr/share/hello/old.txt', mode: '0644', content: 'only in 1.0\n' },
]);
const HELLO_2 = hello('1.2-r0', [
  { path: 'etc/hello.conf', mode: '0640', content: 'greeting=2\n' },
  { path: 'usr/share/hello/new.txt', mode: '0644', content: 'new in 1.2\n' },
]);
const OTHER = { ...hello('3.0-r0', [{ path: 'usr/share/other.txt', mode: '0644', content: 'not in the repository\n' }]), name: 'other' };
const UNINSTALLED = { ...hello('9.0-r0', [{ path: 'usr/share/extra.txt', mode: '0644', content: 'never installed\n' }]), name: 'extra' };

const baseSpec = (key: ApkKeyPair, version: string) => psyopsBaseSpec({ version, arch: ARCH, apkKeyName: key.keyName, apkPublicKeyPem: key.publicKeyPem });

/** A signed repository (`<dir>/repo/x86_64`) served on 127.0.0.1, holding `specs`. */
async function repository(key: ApkKeyPair, specs: PackageSpec[]): Promise<{ url: string; dir: string }> {
  const dir = join(tempDir('apkrepo'), 'repo');
  mkdirSync(join(dir, ARCH), { recursive: true });
  for (const spec of specs) {
    const built = await buildPackage(spec, { sourceDateEpoch: EPOCH, key: { keyName: key.keyName, privateKey: key.privateKeyPem } });
    writeFileSync(join(dir, ARCH, built.fileName), built.bytes);
  }
  await indexRepository(dir, { sourceDateEpoch: EPOCH, key: { keyName: key.keyName, privateKey: key.privateKeyPem }, description: 'site' });
  const served = await serveDir(join(dir, '..'));
  return { url: `${served.url}/repo`, dir };
}

/** A root with `specs` installed as imagebuild installs them (extracted, lib/apk/db/installed as apk writes it) and the site's repository and key. */
async function installedRoot(key: ApkKeyPair, repositoryUrl: string, specs: PackageSpec[]): Promise<string> {
  const root = tempDir('upgraderoot');
  const installed = [];
  for (const spec of specs) {
    const built = await buildPackage(spec, { sourceDateEpoch: EPOCH, key: { keyName: key.keyName, privateKey: key.privateKeyPem } });
    const pkg = readPackage(built.bytes);
    await extractPackage(pkg, root);
    installed.push(installedPackageOf(pkg, ARCH));
  }
  mkdirSync(join(root, 'lib/apk/db'), { recursive: true });
  writeFileSync(join(root, 'lib/apk/db/installed'), formatInstalledDb(installed));
  writeFileSync(join(root, 'lib/apk/db/scripts.tar'), formatScriptsTar(installed, EPOCH));
  mkdirSync(join(root, 'etc/apk/keys'), { recursive: true });
  writeFileSync(join(root, 'etc/apk/keys', key.keyName), key.publicKeyPem);
  writeFileSync(join(root, 'etc/apk/repositories'), `# the site\n${repositoryUrl}\n`);
  writeFileSync(join(root, 'etc/apk/arch'), `${ARCH}\n`);
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\n');
  return root;
}

const read = (root: string, path: string) => readFileSync(join(root, path), 'utf8');
const versions = (root: string) => Object.fromEntries(parseInstalledDb(read(root, 'lib/apk/db/installed')).map((e) => [e.fields.get('P'), e.fields.get('V')]));

describe('psyops-node upgrade with the built-in client (apkpkg), a real signed repository on 127.0.0.1', () => {
  let key: ApkKeyPair;
  beforeAll(async () => {
    key = await generateApkKey({ name: 'site@example.org', bits: 2048, now: EPOCH });
  });

  it('upgrades what the repository has newer, removes files the new version dropped, runs post-upgrade, rewrites the installed db', async () => {
    const repo = await repository(key, [HELLO_1, HELLO_2, await baseSpec(key, '1.0.2-r0'), UNINSTALLED]);
    const root = await installedRoot(key, repo.url, [HELLO_1, OTHER, await baseSpec(key, '1.0.1-r0')]);
    const otherBlock = read(root, 'lib/apk/db/installed')
      .split('\n\n')
      .find((block) => block.includes('P:other'));

    const out: string[] = [];
    const commands = makeOpsCommands({ system: () => new TempRootSystem({ root }), out: (t) => out.push(t), err: (t) => out.push(`ERR ${t}`), env: {} });
    expect(await commands.upgrade(['--json'])).toBe(0);
    const report = JSON.parse(out.join(''));
    expect(report).toEqual({
      upgraded: [
        { name: 'hello', from: '1.0-r0', to: '1.2-r0' },
        { name: 'psyopsOS-base', from: '1.0.1-r0', to: '1.0.2-r0' },
      ],
      unchanged: 1,
      client: 'builtin',
      problems: [],
    });
    expect(read(root, 'etc/hello.conf')).toBe('greeting=2\n');
    expect(existsSync(join(root, 'usr/share/hello/old.txt'))).toBe(false);
    expect(read(root, 'usr/share/hello/new.txt')).toBe('new in 1.2\n');
    expect(existsSync(join(root, 'usr/share/extra.txt'))).toBe(false);
    expect(versions(root)).toEqual({ hello: '1.2-r0', other: '3.0-r0', 'psyopsOS-base': '1.0.2-r0' });
    // The other package's block is as it was, byte for byte; hello's lists its new files only.
    const db = read(root, 'lib/apk/db/installed');
    expect(db.split('\n\n')).toContain(otherBlock);
    const helloDirs = parseInstalledDb(db).find((e) => e.fields.get('P') === 'hello')!.dirs;
    expect(helloDirs.flatMap((d) => d.files.map((f) => `${d.name}/${f.name}`))).toEqual(['etc/hello.conf', 'usr/share/hello/new.txt']);
    // scripts.tar (read by GNU tar) holds the new version's scripts in place of the old's.
    const base = parseInstalledDb(db)
      .find((e) => e.fields.get('P') === 'psyopsOS-base')!
      .fields.get('C');
    const { stdout } = await promisify(execFile)('tar', ['-tf', join(root, 'lib/apk/db/scripts.tar')], { timeout: 30_000 });
    expect(stdout).toBe(`psyopsOS-base-1.0.2-r0.${base}.post-install\npsyopsOS-base-1.0.2-r0.${base}.post-upgrade\n`);
    // psyopsOS-base's real post-upgrade ran against this root (ROOT=…): it adds the telepathy user.
    expect(read(root, 'etc/passwd')).toMatch(/^telepathy:x:100:100:/m);

    // Again: nothing newer.
    const again = await runUpgrade(new TempRootSystem({ root }));
    expect(again).toMatchObject({ upgraded: [], unchanged: 3 });
  });

  it('refuses an index not signed by a key in /etc/apk/keys, and a package that does not match the signed index; nothing written', async () => {
    const stranger = await generateApkKey({ name: 'stranger@example.org', bits: 2048, now: EPOCH });
    const foreign = await repository(stranger, [HELLO_2]);
    const root = await installedRoot(key, foreign.url, [HELLO_1]);
    const dbBefore = read(root, 'lib/apk/db/installed');
    await expect(runUpgrade(new TempRootSystem({ root }))).rejects.toThrow(/UNTRUSTED.*nothing upgraded/);

    const repo = await repository(key, [HELLO_2]);
    const file = join(repo.dir, ARCH, 'hello-1.2-r0.apk');
    const bytes = readFileSync(file);
    bytes[bytes.length - 40]! ^= 0xff;
    writeFileSync(file, bytes);
    writeFileSync(join(root, 'etc/apk/repositories'), `${repo.url}\n`);
    const out: string[] = [];
    const commands = makeOpsCommands({ system: () => new TempRootSystem({ root }), out: (t) => out.push(t), err: (t) => out.push(t), env: {} });
    expect(await commands.upgrade([])).toBe(1);
    expect(out.join('')).toMatch(/^psyops-node: .*hello-1\.2-r0\.apk: .*: hello not upgraded \(UPGRADE_FAILED\)\n$/);
    expect(read(root, 'etc/hello.conf')).toBe('greeting=1\n');
    expect(read(root, 'lib/apk/db/installed')).toBe(dbBefore);
  });
});
