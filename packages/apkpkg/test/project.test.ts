import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import {
  buildPackage,
  extractPackage,
  generateApkKey,
  indexEntryOf,
  InvalidSpecError,
  nodebootSpec,
  psyopsBaseSpec,
  readPackage,
  resolve,
  UnsatisfiableError,
  type IndexEntry,
  type PsyopsBaseOptions,
} from '../src/index.ts';
import { EPOCH, tempDir } from './helpers.ts';

const key = await generateApkKey({ name: 'ops@example.org', bits: 2048, now: EPOCH });
const HASH = `$6$saltsalt$${'x'.repeat(86)}`;
const base = {
  version: '1.0.1700000000-r0',
  arch: 'x86_64',
  repositoryUrl: 'https://psyops.example.org/apk/psyopsOS',
  apkKeyName: key.keyName,
  apkPublicKeyPem: key.publicKeyPem,
  rootPasswordHash: HASH,
  sshAuthorizedKeys: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample operator@example.org',
};

async function extractedBase(options: PsyopsBaseOptions = base): Promise<string> {
  const built = await buildPackage(await psyopsBaseSpec(options), { sourceDateEpoch: EPOCH, key: { keyName: key.keyName, privateKey: key.privateKeyPem } });
  const dir = tempDir('base');
  await extractPackage(readPackage(built.bytes), dir);
  return dir;
}

describe('psyopsOS-base', () => {
  it('installs the repository key, setup, boot media writer and telepathy with the right modes', async () => {
    const built = await buildPackage(await psyopsBaseSpec(base), { sourceDateEpoch: EPOCH });
    const pkg = readPackage(built.bytes);
    expect(built.fileName).toBe('psyopsOS-base-1.0.1700000000-r0.apk');
    expect(pkg.info.depend).toEqual(['nodejs', 'cmd:openrc-run', 'cmd:rc-update', '/bin/sh']);
    expect(Object.keys(pkg.scripts)).toEqual(['.post-install', '.post-upgrade']);
    const modes = Object.fromEntries(pkg.files.map((f) => [f.path, f.mode.toString(8)]));
    expect(modes).toMatchObject({
      [`etc/apk/keys/${key.keyName}`]: '644',
      'etc/psyopsOS': '700',
      'etc/psyopsOS/root-password.hash': '600',
      'etc/psyopsOS/authorized_keys': '600',
      'usr/sbin/psyopsOS-setup': '755',
      'usr/sbin/psyopsOS-write-bootmedia': '755',
      'usr/lib/psyopsOS/telepathy.mjs': '755',
      'etc/init.d/telepathy': '755',
    });
  });

  it('refuses a plain password where the hash belongs, and bad versions', async () => {
    await expect(psyopsBaseSpec({ ...base, rootPasswordHash: 'hunter2' })).rejects.toThrow(/not a password/);
    await expect(psyopsBaseSpec({ ...base, version: '1.0.0-beta' })).rejects.toThrow(InvalidSpecError);
    await expect(psyopsBaseSpec({ ...base, apkPublicKeyPem: key.privateKeyPem })).rejects.toThrow(/not a PEM public key/);
  });

  it('psyopsOS-setup sets the root hash, the SSH key and the repository line (idempotent)', async () => {
    const root = await extractedBase();
    mkdirSync(join(root, 'etc'), { recursive: true });
    writeFileSync(join(root, 'etc/shadow'), 'root:*:19000:0:::::\nbin:!::0:::::\n');
    writeFileSync(join(root, 'etc/apk/repositories'), 'https://dl-cdn.alpinelinux.org/alpine/v3.22/main\n');
    for (let i = 0; i < 2; i++) {
      await execa('sh', [join(root, 'usr/sbin/psyopsOS-setup')], { env: { ROOT: root }, timeout: 30_000 });
    }
    expect(readFileSync(join(root, 'etc/shadow'), 'utf8')).toBe(`root:${HASH}:19000:0:::::\nbin:!::0:::::\n`);
    expect(readFileSync(join(root, 'root/.ssh/authorized_keys'), 'utf8')).toBe(`${base.sshAuthorizedKeys}\n`);
    expect(statSync(join(root, 'root/.ssh/authorized_keys')).mode & 0o777).toBe(0o600);
    expect(statSync(join(root, 'root/.ssh')).mode & 0o777).toBe(0o700);
    expect(readFileSync(join(root, 'etc/apk/repositories'), 'utf8')).toBe(`https://dl-cdn.alpinelinux.org/alpine/v3.22/main\n${base.repositoryUrl}\n`);
  });

  it('without a repository URL (the embedded default image has no site) it leaves etc/apk/repositories alone', async () => {
    const { repositoryUrl: _, ...withoutSite } = base;
    await expect(psyopsBaseSpec({ ...base, repositoryUrl: 'https://example.org/a b' })).rejects.toThrow(/invalid repository URL/);
    const root = await extractedBase(withoutSite);
    expect(existsSync(join(root, 'etc/psyopsOS/repository'))).toBe(false);
    writeFileSync(join(root, 'etc/shadow'), 'root:*:19000:0:::::\n');
    mkdirSync(join(root, 'etc/apk'), { recursive: true });
    writeFileSync(join(root, 'etc/apk/repositories'), '/media/boot/apks\n');
    await execa('sh', [join(root, 'usr/sbin/psyopsOS-setup')], { env: { ROOT: root }, timeout: 30_000 });
    expect(readFileSync(join(root, 'etc/apk/repositories'), 'utf8')).toBe('/media/boot/apks\n');
    expect(readFileSync(join(root, 'etc/shadow'), 'utf8')).toBe(`root:${HASH}:19000:0:::::\n`);
  });

  it("resolves with OpenRC's commands from Alpine's openrc or from the default image's host-baselayout, and not without them", async () => {
    const entry = indexEntryOf(readPackage((await buildPackage(await psyopsBaseSpec(base), { sourceDateEpoch: EPOCH })).bytes));
    let count = 0;
    const stub = (name: string, version: string, provides: string[] = [], depends: string[] = []): IndexEntry => ({
      ...entry,
      identity: `Q1${String(++count).padStart(27, 'A')}=`,
      name,
      version,
      depends,
      provides,
      installIf: [],
    });
    const common = [entry, stub('nodejs', '24.11.1-r0'), stub('busybox', '1.37.0-r19', ['/bin/sh', 'cmd:sh=1.37.0-r19'])];
    // As Alpine indexes openrc (abuild adds a cmd: provide for each program in a bin directory).
    const alpine = [...common, stub('openrc', '0.62.6-r0', ['cmd:openrc-run=0.62.6-r0', 'cmd:rc-update=0.62.6-r0', 'cmd:rc-service=0.62.6-r0'])];
    const hostBaselayout = stub('host-baselayout', '1.2.0-r0', ['cmd:openrc-run=1.2.0-r0', 'cmd:rc-update=1.2.0-r0'], ['busybox']);
    const installed = (entries: IndexEntry[], world: string[]) =>
      resolve(world, [{ entries }])
        .map((resolved) => resolved.entry.name)
        .sort();
    expect(installed(alpine, ['busybox', 'psyopsOS-base'])).toEqual(['busybox', 'nodejs', 'openrc', 'psyopsOS-base']);
    expect(installed([...common, hostBaselayout], ['host-baselayout', 'psyopsOS-base'])).toEqual(['busybox', 'host-baselayout', 'nodejs', 'psyopsOS-base']);
    expect(() => installed(common, ['busybox', 'psyopsOS-base'])).toThrow(UnsatisfiableError);
    expect(() => installed(common, ['busybox', 'psyopsOS-base'])).toThrow(/cmd:openrc-run/);
  });

  it('psyopsOS-write-bootmedia refuses anything that is not a whole disk', async () => {
    const root = await extractedBase();
    const script = join(root, 'usr/sbin/psyopsOS-write-bootmedia');
    const iso = join(root, 'new.iso');
    writeFileSync(iso, Buffer.alloc(4096));
    const run = (args: string[], env: Record<string, string> = {}) => execa('sh', [script, ...args], { reject: false, timeout: 30_000, env });
    const notBlock = await run([iso, iso]);
    expect(notBlock.exitCode).toBe(1);
    expect(notBlock.stderr).toContain(`${iso} is not a block device`);
    const noIso = await run([join(root, 'missing.iso'), '/dev/null']);
    expect(noIso.stderr).toContain('missing.iso is not a file');
    // A fake sysfs where the device is a partition: refused before anything else is looked at.
    const sysfs = join(root, 'sys');
    mkdirSync(join(sysfs, 'null'), { recursive: true });
    writeFileSync(join(sysfs, 'null/partition'), '1\n');
    const partition = await run([iso, '/dev/null'], { PSYOPS_SYSFS: sysfs });
    expect(partition.stderr).toContain('/dev/null is a partition; give the whole disk');
    const noLabel = await run([iso], { PSYOPS_BOOT_LABEL_PREFIX: 'psyopsos-boot-none-here', PATH: '/usr/bin:/bin' });
    expect(noLabel.exitCode).toBe(1);
    expect(noLabel.stderr).toContain('no device with a label starting with "psyopsos-boot-none-here"');
  });

  it('telepathy answers /, /hostname, /status and plugins read-only on 127.0.0.1', async () => {
    const root = await extractedBase();
    const plugins = join(root, 'etc/telepathy/plugins.d');
    writeFileSync(join(plugins, 'k3s'), '#!/bin/sh\necho k3s ok\n', { mode: 0o755 });
    writeFileSync(join(plugins, 'notexec'), 'echo no\n', { mode: 0o644 });
    const statusFile = join(root, 'etc/psyopsOS/status.json');
    const server = execa('node', [join(root, 'usr/lib/psyopsOS/telepathy.mjs')], {
      env: { TELEPATHY_PORT: '0', TELEPATHY_HOST: '127.0.0.1', TELEPATHY_PLUGINS: plugins, TELEPATHY_STATUS: statusFile },
      timeout: 60_000,
      reject: false,
    });
    try {
      const address = await new Promise<string>((done, fail) => {
        server.stdout!.on('data', (chunk: Buffer) => {
          const match = /listening on (\S+)/.exec(chunk.toString());
          if (match) done(match[1]!);
        });
        // Settles when telepathy exits (reject: false); execa 10's result is no EventEmitter.
        void server.then(() => fail(new Error('telepathy exited')));
      });
      const get = (path: string, method = 'GET') => fetch(`http://${address}${path}`, { method, signal: AbortSignal.timeout(10_000) });
      const status = (await (await get('/')).json()) as { hostname: string; plugins: string[] };
      expect(status.plugins).toEqual(['k3s']);
      expect(await (await get('/hostname')).text()).toBe(`${status.hostname}\n`);
      expect(await (await get('/plugins/k3s')).text()).toBe('k3s ok\n');
      expect((await get('/plugins/notexec')).status).toBe(404);
      expect((await get('/plugins/..%2F..%2Fbin%2Fsh')).status).toBe(404);
      expect((await get('/', 'POST')).status).toBe(405);
      // /status: postboot's file as it is, read again on every request.
      const missing = await get('/status');
      expect(missing.status).toBe(404);
      expect(missing.headers.get('content-type')).toBe('application/json');
      expect(await missing.json()).toEqual({ error: `no status yet: ${statusFile} does not exist (postboot writes it)` });
      const written = '{"state":"degraded","problems":["no secret volume"]}\n';
      writeFileSync(statusFile, written);
      const found = await get('/status');
      expect(found.status).toBe(200);
      expect(found.headers.get('content-type')).toBe('application/json');
      expect(await found.text()).toBe(written);
      rmSync(statusFile);
      expect((await get('/status')).status).toBe(404);
    } finally {
      server.kill();
      await server;
    }
  });
});

describe('psyops-nodeboot', () => {
  it('packages the bundle and its command, needing only nodejs (no OpenRC on the embedded default)', async () => {
    const spec = await nodebootSpec({ version: '1.0.1700000000-r0', arch: 'x86_64', bundle: 'console.log("nodeboot");\n' });
    const pkg = readPackage((await buildPackage(spec, { sourceDateEpoch: EPOCH })).bytes);
    expect(pkg.files.filter((f) => f.type === 'file').map((f) => `${f.path}:${f.mode.toString(8)}`)).toEqual([
      'usr/lib/psyops/nodeboot.mjs:755',
      'usr/sbin/psyops-node:755',
    ]);
    expect(pkg.info.depend).toEqual(['nodejs']);
    expect(Object.keys(pkg.scripts)).toEqual([]);
  });
});
