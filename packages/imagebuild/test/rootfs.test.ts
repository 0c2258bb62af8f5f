import { createHash } from 'node:crypto';
import { copyFile, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildPackage, indexEntryOf, readPackage, resolve, type PackageSpec } from '@psyops/apkpkg';
import { sha1Checksum } from '@psyops/apkpkg/format';
import { execa } from 'execa';
import { ImageConfigError } from '../src/errors.js';
import { fetchPackages, type FetchedPackage } from '../src/packages.js';
import { loadRepositories, type LoadedRepository } from '../src/repositories.js';
import { assembleRootTree, extractTree, findKernel, findStaticBusybox, FIRSTBOOT_DIR, type RootTree } from '../src/rootfs.js';
import {
  buildFixtureRepository,
  FIXTURE_APPLETS,
  FIXTURE_ARCH,
  FIXTURE_EPOCH,
  FIXTURE_KERNEL_FLAVOR,
  FIXTURE_MODULES,
  FIXTURE_WORLD,
  HOST_BUSYBOX,
  hostModulesVersion,
  type FixtureRepository,
} from './fixtures/repository.js';

const MTIME = 1_750_000_000;
/** SHA-256 of a file: vitest's deep equality walks big buffers byte by byte (seconds for 2 MB). */
async function digest(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

let fixture: FixtureRepository;
let scratch: string;
let repositories: LoadedRepository[];
let rootPackages: FetchedPackage[];
let root: RootTree;
let keyName: string;

beforeAll(async () => {
  fixture = await buildFixtureRepository();
  scratch = await mkdtemp(join(tmpdir(), 'imagebuild-rootfs-'));
  const cacheDir = join(scratch, 'cache');
  repositories = await loadRepositories([{ url: fixture.dir, keysDir: fixture.keysDir }], { arch: FIXTURE_ARCH, cacheDir });
  rootPackages = await fetchPackages(resolve(FIXTURE_WORLD, repositories), repositories, { cacheDir });
  keyName = (await readdir(fixture.keysDir))[0]!;
  root = await assembleRootTree(rootOptions(join(scratch, 'root')));
});

afterAll(async () => {
  await fixture?.cleanup();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

function rootOptions(outDir: string) {
  return {
    packages: rootPackages,
    world: [...FIXTURE_WORLD].reverse(),
    repositories: ['https://example.invalid/repo', '/media/cdrom/apks'],
    keysDirs: [fixture.keysDir],
    arch: FIXTURE_ARCH,
    outDir,
    mtime: MTIME,
  };
}

/** A package built on the spot, as a fetched package (entry derived as apk index would). */
async function adHocPackage(spec: Omit<PackageSpec, 'arch' | 'url' | 'license' | 'description'>): Promise<FetchedPackage> {
  const built = await buildPackage({ arch: FIXTURE_ARCH, url: 'u', license: 'MIT', description: 'd', ...spec }, { sourceDateEpoch: FIXTURE_EPOCH });
  const path = join(scratch, built.fileName);
  await writeFile(path, built.bytes);
  return { entry: indexEntryOf(readPackage(built.bytes), FIXTURE_ARCH), path };
}

/** Every entry of a tree: type, mode, mtime and content hash or link target, sorted by path. */
async function describeTree(dir: string, prefix = ''): Promise<string[]> {
  const lines: string[] = [];
  for (const name of (await readdir(join(dir, prefix))).sort()) {
    const path = prefix ? `${prefix}/${name}` : name;
    const info = await lstat(join(dir, path));
    const what = info.isSymbolicLink() ? `-> ${await readlink(join(dir, path))}` : info.isDirectory() ? 'dir' : await digest(join(dir, path));
    lines.push(`${path} ${(info.mode & 0o7777).toString(8)} ${info.mtimeMs / 1000} ${what}`);
    if (info.isDirectory()) lines.push(...(await describeTree(dir, path)));
  }
  return lines;
}

const text = (path: string): Promise<string> => readFile(join(root.dir, path), 'utf8');

describe('assembleRootTree', () => {
  test('files from the packages in install order; a later package overwrites an earlier file', async () => {
    expect(rootPackages.map((p) => p.entry.name)).toEqual(['baselayout', 'busybox', 'hello', 'suidtool']);
    expect(await digest(join(root.dir, 'bin/busybox'))).toBe(await digest(HOST_BUSYBOX));
    expect(await text('usr/bin/hello')).toBe('#!/bin/sh\necho hello\n');
    expect(await text('etc/motd')).toBe('from suidtool\n');
    expect((await lstat(join(root.dir, 'usr/bin/suidtool'))).mode & 0o7777).toBe(0o4755);
    expect((await lstat(join(root.dir, 'var/lib/suidtool'))).mode & 0o7777).toBe(0o750);
  });

  test('busybox applet links from etc/busybox-paths.d, never over an existing file', async () => {
    for (const applet of FIXTURE_APPLETS.filter((a) => a !== '/usr/bin/hello')) {
      expect(await readlink(join(root.dir, applet))).toBe('/bin/busybox');
    }
    expect((await lstat(join(root.dir, 'usr/bin/hello'))).isFile()).toBe(true);
    expect((await lstat(join(root.dir, 'sbin'))).mode & 0o7777).toBe(0o755);
  });

  test("apk's files: world, arch, repositories, keys, lock", async () => {
    expect(await text('etc/apk/world')).toBe('baselayout\nhello\nsuidtool\n');
    expect(await text('etc/apk/arch')).toBe('x86_64\n');
    expect(await text('etc/apk/repositories')).toBe('https://example.invalid/repo\n/media/cdrom/apks\n');
    expect(await readdir(join(root.dir, 'etc/apk/keys'))).toEqual([keyName]);
    expect(await digest(join(root.dir, 'etc/apk/keys', keyName))).toBe(await digest(join(fixture.keysDir, keyName)));
    expect(await text('lib/apk/db/lock')).toBe('');
    expect((await lstat(join(root.dir, 'lib/apk/db/lock'))).mode & 0o777).toBe(0o600);
  });

  test('lib/apk/db/installed, field by field', async () => {
    const blocks = (await text('lib/apk/db/installed')).split('\n\n').filter((b) => b !== '');
    expect(blocks).toHaveLength(4);
    const fields = blocks.map((block) => block.split('\n'));
    expect(fields.map((f) => f[1])).toEqual(['P:baselayout', 'P:busybox', 'P:hello', 'P:suidtool']);
    const [, busybox, hello, suidtool] = fields as [string[], string[], string[], string[]];
    const entry = (name: string) => rootPackages.find((p) => p.entry.name === name)!.entry;
    const sha1 = (data: string | Buffer) => sha1Checksum(createHash('sha1').update(data).digest('hex'));

    expect(hello.slice(0, 3)).toEqual([`C:${entry('hello').identity}`, 'P:hello', 'V:1.0-r0']);
    expect(hello).toContain('A:x86_64'); // the repository's arch, not noarch
    expect(hello).toContain(`S:${entry('hello').size}`);
    expect(hello).toContain('D:busybox /bin/sh');
    const helloFiles = hello.slice(hello.indexOf('F:etc'));
    expect(helloFiles).toEqual([
      'F:etc',
      'R:motd',
      `Z:${sha1('from hello\n')}`,
      'F:usr',
      'F:usr/bin',
      'R:hello',
      'a:0:0:755',
      `Z:${sha1('#!/bin/sh\necho hello\n')}`,
      'F:usr/share',
      'F:usr/share/hello',
      'R:greeting',
      `Z:${sha1('hello\n')}`,
    ]);
    expect(busybox).toContain('p:/bin/sh=1.36.1-r0');
    expect(busybox.slice(busybox.indexOf('F:bin'), busybox.indexOf('F:bin') + 4)).toEqual([
      'F:bin',
      'R:busybox',
      'a:0:0:755',
      `Z:${sha1(await readFile(HOST_BUSYBOX))}`,
    ]);
    expect(suidtool.slice(suidtool.indexOf('F:usr'))).toEqual([
      'F:usr',
      'F:usr/bin',
      'R:suidtool',
      'a:0:0:4755',
      `Z:${sha1('#!/bin/sh\nid\n')}`,
      'F:var',
      'F:var/lib',
      'F:var/lib/suidtool',
      'M:200:201:750', // the tar says suidtool (100:101); the tree's passwd and group say 200:201, like apk
      'R:state',
      'a:200:201:640',
      `Z:${sha1('state\n')}`,
    ]);
  });

  test('scripts.tar and triggers', async () => {
    const hello = rootPackages.find((p) => p.entry.name === 'hello')!.entry;
    const tar = join(root.dir, 'lib/apk/db/scripts.tar');
    const names = ['pre-install', 'post-install', 'trigger'].map((s) => `hello-1.0-r0.${hello.identity}.${s}`);
    // GNU tar reads it (and would complain about a missing end-of-archive marker).
    expect((await execa('tar', ['-tf', tar], { timeout: 30_000 })).stdout.split('\n')).toEqual(names);
    expect((await execa('tar', ['-xOf', tar, names[1]!], { timeout: 30_000 })).stdout).toBe('#!/bin/sh\necho post-install hello > /var/log/hello');
    expect((await readFile(tar)).subarray(-1024)).toEqual(Buffer.alloc(1024));
    expect(await text('lib/apk/db/triggers')).toBe(`${hello.identity} /usr/share/hello\n`);
  });

  test('install scripts become first-boot scripts: numbered by install position, pre before post, 0700', async () => {
    expect(root.firstBootScripts).toBe(2);
    expect(await readdir(join(root.dir, FIRSTBOOT_DIR))).toEqual(['0003-hello.post-install', '0003-hello.pre-install']);
    const post = join(root.dir, FIRSTBOOT_DIR, '0003-hello.post-install');
    expect(await readFile(post, 'utf8')).toBe('#!/bin/sh\necho post-install hello > /var/log/hello\n');
    expect((await lstat(post)).mode & 0o777).toBe(0o700);
  });

  test('entries the squashfs stage must own or mark specially', () => {
    expect(root.specialEntries).toEqual([
      { path: 'usr/bin/suidtool', uid: 0, gid: 0, mode: 0o4755 },
      { path: 'var/lib/suidtool', uid: 200, gid: 201, mode: 0o750 },
      { path: 'var/lib/suidtool/state', uid: 200, gid: 201, mode: 0o640 },
    ]);
    expect(root.devices).toEqual([]);
  });

  test('deterministic: a second assembly gives the same tree, every entry at the given mtime', async () => {
    const again = await assembleRootTree(rootOptions(join(scratch, 'root-again')));
    const first = await describeTree(root.dir);
    expect(await describeTree(again.dir)).toEqual(first);
    expect(first.length).toBeGreaterThan(30);
    expect(first.every((line) => line.split(' ')[2] === String(MTIME))).toBe(true);
    expect((await lstat(root.dir)).mtimeMs / 1000).toBe(MTIME);
  });

  test('an existing output directory is refused and left alone', async () => {
    const outDir = join(scratch, 'exists');
    await mkdir(outDir);
    await writeFile(join(outDir, 'keep'), 'mine');
    await expect(assembleRootTree(rootOptions(outDir))).rejects.toThrow(/already exists/);
    expect(await readdir(outDir)).toEqual(['keep']);
  });

  test('a failure leaves no partial tree behind', async () => {
    const outDir = join(scratch, 'broken');
    const broken = { ...rootPackages[1]!, path: join(scratch, 'missing.apk') };
    await expect(assembleRootTree({ ...rootOptions(outDir), packages: [rootPackages[0]!, broken] })).rejects.toThrow(/missing\.apk/);
    await expect(lstat(outDir)).rejects.toThrow();
  });

  test('without busybox-paths.d, a busybox gets a first-boot script that installs the applet links first', async () => {
    const busybox = await adHocPackage({ name: 'busybox-plain', version: '1.0-r0', files: [{ path: 'bin/busybox', content: 'fake', mode: '0755' }] });
    const tool = await adHocPackage({
      name: 'tool',
      version: '1.0-r0',
      scripts: { 'post-install': { content: '#!/bin/sh\ntrue\n' } },
      files: [{ path: 'etc/tool', content: 'x' }],
    });
    const tree = await assembleRootTree({ ...rootOptions(join(scratch, 'plain')), packages: [busybox, tool], world: ['busybox-plain', 'tool'] });
    expect(tree.firstBootScripts).toBe(2);
    expect(await readdir(join(tree.dir, FIRSTBOOT_DIR))).toEqual(['0000-busybox.post-install', '0002-tool.post-install']);
    expect(await readFile(join(tree.dir, FIRSTBOOT_DIR, '0000-busybox.post-install'), 'utf8')).toContain('/bin/busybox --install -s');
    await expect(lstat(join(tree.dir, 'bin/sh'))).rejects.toThrow();
  });

  test('applet paths are resolved inside the tree: a link through a symlinked directory stays in the tree', async () => {
    const merged = await adHocPackage({
      name: 'merged-usr',
      version: '1.0-r0',
      files: [
        { path: 'usr/bin', type: 'dir' },
        { path: 'bin', type: 'symlink', target: '/usr/bin' },
        { path: 'usr/bin/busybox', content: 'fake', mode: '0755' },
        { path: 'etc/busybox-paths.d/busybox', content: '/bin/cat\n' },
      ],
    });
    const tree = await assembleRootTree({ ...rootOptions(join(scratch, 'merged')), packages: [merged], world: ['merged-usr'] });
    expect(await readlink(join(tree.dir, 'usr/bin/cat'))).toBe('/bin/busybox');
    expect(tree.firstBootScripts).toBe(0);
  });
});

describe('boot set', () => {
  let bootPackages: FetchedPackage[];
  beforeAll(async () => {
    bootPackages = await fetchPackages(resolve([`linux-${FIXTURE_KERNEL_FLAVOR}`, 'busybox'], repositories), repositories, {
      cacheDir: join(scratch, 'cache'),
    });
  });

  test('extractTree and findKernel: image, module version, modules and firmware directories', async () => {
    const tree = await extractTree(bootPackages, join(scratch, 'boot-tree'), MTIME);
    const kernel = await findKernel(tree.dir, FIXTURE_KERNEL_FLAVOR);
    const version = hostModulesVersion();
    expect(kernel).toEqual({
      kernelVersion: version,
      image: join(tree.dir, 'boot/vmlinuz-test'),
      modulesDir: join(tree.dir, 'lib/modules'),
      firmwareDir: join(tree.dir, 'lib/firmware'),
    });
    for (const module of FIXTURE_MODULES)
      expect(await digest(join(kernel.modulesDir, version, module))).toBe(await digest(join('/lib/modules', version, module)));
    expect((await describeTree(tree.dir)).every((line) => line.split(' ')[2] === String(MTIME))).toBe(true);
    await expect(lstat(join(tree.dir, 'lib/apk'))).rejects.toThrow(); // plain extraction: no apk database
    await expect(findKernel(tree.dir, 'lts')).rejects.toThrow(ImageConfigError);
    await expect(findKernel(tree.dir, 'lts')).rejects.toThrow('boot/vmlinuz-lts');
  });

  test('findStaticBusybox: busybox.static first, a static bin/busybox next, else a clear error', async () => {
    const tree = await extractTree(bootPackages, join(scratch, 'boot-busybox'), MTIME);
    expect(await findStaticBusybox(tree.dir)).toBe(join(tree.dir, 'bin/busybox'));

    await copyFile(HOST_BUSYBOX, join(tree.dir, 'bin/busybox.static'));
    expect(await findStaticBusybox(tree.dir)).toBe(join(tree.dir, 'bin/busybox.static'));

    const dynamic = join(scratch, 'dynamic');
    await mkdir(join(dynamic, 'bin'), { recursive: true });
    await copyFile(process.execPath, join(dynamic, 'bin/busybox')); // node itself: dynamically linked
    await expect(findStaticBusybox(dynamic)).rejects.toThrow(/needs a static busybox.*busybox-static/);
    await rm(join(dynamic, 'bin/busybox'));
    await expect(findStaticBusybox(dynamic)).rejects.toThrow(ImageConfigError);
  });
});
