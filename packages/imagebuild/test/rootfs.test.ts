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
import {
  assembleRootTree,
  extractTree,
  findKernel,
  findStaticBusybox,
  FIRSTBOOT_DIR,
  nodeRepositories,
  RootWithoutInitError,
  type RootTree,
} from '../src/rootfs.js';
import {
  buildFixtureRepository,
  fixtureSpecs,
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
/** The fixture's world as resolved: its suidtool carries hello's etc/motd without replacing hello. */
let fixturePackages: FetchedPackage[];
/** The same with a suidtool that `replaces` hello, which apk needs to let it overwrite etc/motd. */
let rootPackages: FetchedPackage[];
let root: RootTree;
let keyName: string;

beforeAll(async () => {
  fixture = await buildFixtureRepository();
  scratch = await mkdtemp(join(tmpdir(), 'imagebuild-rootfs-'));
  const cacheDir = join(scratch, 'cache');
  repositories = await loadRepositories([{ url: fixture.dir, keysDir: fixture.keysDir }], { arch: FIXTURE_ARCH, cacheDir });
  fixturePackages = await fetchPackages(resolve(FIXTURE_WORLD, repositories), repositories, { cacheDir });
  const suidtool = fixtureSpecs().find((spec) => spec.name === 'suidtool')!;
  const built = await buildPackage({ ...suidtool, replaces: ['hello'] }, { sourceDateEpoch: FIXTURE_EPOCH });
  await writeFile(join(scratch, built.fileName), built.bytes);
  const replacing = { entry: indexEntryOf(readPackage(built.bytes), FIXTURE_ARCH), path: join(scratch, built.fileName) };
  rootPackages = fixturePackages.map((p) => (p.entry.name === 'suidtool' ? replacing : p));
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
    repositories: ['https://example.invalid/repo', '@site https://example.invalid/site'],
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
  test('files from the packages in install order; a later package that replaces an earlier one overwrites its file', async () => {
    expect(rootPackages.map((p) => p.entry.name)).toEqual(['baselayout', 'busybox', 'hello', 'suidtool']);
    expect(await digest(join(root.dir, 'bin/busybox'))).toBe(await digest(HOST_BUSYBOX));
    expect(await text('usr/bin/hello')).toBe('#!/bin/sh\necho hello\n');
    expect(await text('etc/motd')).toBe('from suidtool\n');
    expect((await lstat(join(root.dir, 'usr/bin/suidtool'))).mode & 0o7777).toBe(0o4755);
    expect((await lstat(join(root.dir, 'var/lib/suidtool'))).mode & 0o7777).toBe(0o750);
  });

  test('busybox applet links from etc/busybox-paths.d (paths with a leading /), never over an existing file', async () => {
    for (const applet of FIXTURE_APPLETS.filter((a) => a !== '/usr/bin/hello')) {
      expect(await readlink(join(root.dir, applet))).toBe('/bin/busybox');
    }
    expect((await lstat(join(root.dir, 'usr/bin/hello'))).isFile()).toBe(true);
    expect((await lstat(join(root.dir, 'sbin'))).mode & 0o7777).toBe(0o755);
  });

  test("apk's files: world, arch, repositories, keys, lock", async () => {
    expect(await text('etc/apk/world')).toBe('baselayout\nhello\nsuidtool\n');
    expect(await text('etc/apk/arch')).toBe('x86_64\n');
    expect(await text('etc/apk/repositories')).toBe('https://example.invalid/repo\n@site https://example.invalid/site\n');
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
    // etc/motd moved to suidtool, which replaces hello (apk_db_migrate_files): hello keeps only its
    // directory instance of etc, as apk's database does.
    expect(helloFiles).toEqual([
      'F:etc',
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
    // apk_db_fdb_write: r: (and q: when not 0) right after the index fields, before the files.
    expect(suidtool[suidtool.indexOf('F:etc') - 1]).toBe('r:hello');
    expect(suidtool.slice(suidtool.indexOf('F:etc'), suidtool.indexOf('F:usr'))).toEqual(['F:etc', 'R:motd', `Z:${sha1('from suidtool\n')}`]);
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

  test('install scripts and triggers become first-boot scripts: numbered by install position, triggers after every package, 0700', async () => {
    expect(root.firstBootScripts).toBe(3);
    expect(await readdir(join(root.dir, FIRSTBOOT_DIR))).toEqual([
      '0003-hello.post-install',
      '0003-hello.pre-install',
      '0005-hello.trigger.post-install',
      'exec',
    ]);
    // Each wrapper executes the package's own script as apk does: directly, with the version as $1;
    // the trigger with the directories of the database its patterns match.
    const firstboot = (name: string) => readFile(join(root.dir, FIRSTBOOT_DIR, name), 'utf8');
    expect(await firstboot('0003-hello.post-install')).toBe(
      `#!/bin/sh\n# hello-1.0-r0 post-install, as apk runs it: with the version as $1\nexec /${FIRSTBOOT_DIR}/exec/hello-1.0-r0.post-install '1.0-r0'\n`,
    );
    expect((await firstboot('0005-hello.trigger.post-install')).split('\n')[2]).toBe(`exec /${FIRSTBOOT_DIR}/exec/hello-1.0-r0.trigger '/usr/share/hello'`);
    expect(await readdir(join(root.dir, FIRSTBOOT_DIR, 'exec'))).toEqual(['hello-1.0-r0.post-install', 'hello-1.0-r0.pre-install', 'hello-1.0-r0.trigger']);
    expect(await firstboot('exec/hello-1.0-r0.post-install')).toBe('#!/bin/sh\necho post-install hello > /var/log/hello\n');
    for (const name of ['0003-hello.post-install', 'exec/hello-1.0-r0.trigger'])
      expect((await lstat(join(root.dir, FIRSTBOOT_DIR, name))).mode & 0o777).toBe(0o700);
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
    const busybox = await adHocPackage({
      name: 'busybox-plain',
      version: '1.0-r0',
      files: [
        { path: 'bin/busybox', content: 'fake', mode: '0755' },
        { path: 'sbin/init', type: 'symlink', target: '/bin/busybox' },
      ],
    });
    const tool = await adHocPackage({
      name: 'tool',
      version: '1.0-r0',
      scripts: { 'post-install': { content: '#!/bin/sh\ntrue\n' } },
      files: [{ path: 'etc/tool', content: 'x' }],
    });
    const tree = await assembleRootTree({ ...rootOptions(join(scratch, 'plain')), packages: [busybox, tool], world: ['busybox-plain', 'tool'] });
    expect(tree.firstBootScripts).toBe(2);
    expect(await readdir(join(tree.dir, FIRSTBOOT_DIR))).toEqual(['0000-busybox.post-install', '0002-tool.post-install', 'exec']);
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
        { path: 'etc/busybox-paths.d/busybox', content: '/bin/cat\nsbin/init\n' },
      ],
    });
    const tree = await assembleRootTree({ ...rootOptions(join(scratch, 'merged')), packages: [merged], world: ['merged-usr'] });
    expect(await readlink(join(tree.dir, 'usr/bin/cat'))).toBe('/bin/busybox');
    expect(await readlink(join(tree.dir, 'sbin/init'))).toBe('/bin/busybox'); // and /bin/busybox resolves to usr/bin/busybox: init is there
    expect(tree.firstBootScripts).toBe(0);
  });
});

describe('assembleRootTree: apk rules', () => {
  // apk-tools 2.14 database.c apk_db_install_file: a file another package owns is overwritten only
  // when the new package `replaces` it (or is of the same origin); apk refuses anything else with
  // "trying to overwrite <path> owned by <package>".
  test('a file two packages carry without replaces fails the build, naming both packages and the path; nothing is left', async () => {
    const outDir = join(scratch, 'conflict');
    const error = await assembleRootTree({ ...rootOptions(outDir), packages: fixturePackages }).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'APK_FILE_CONFLICT',
      message: 'suidtool-2.0-r1 would overwrite etc/motd owned by hello-1.0-r0: neither package replaces the other',
    });
    await expect(lstat(outDir)).rejects.toThrow();
  });

  test('an owner that replaces the newcomer with a higher replaces_priority keeps its file, on disk and in the database', async () => {
    const keeper = await adHocPackage({
      name: 'keeper',
      version: '1.0-r0',
      replaces: ['newcomer'],
      replaces_priority: 10,
      files: [
        { path: 'etc/shared', content: 'keeper\n' },
        { path: 'sbin/init', content: '#!/bin/sh\n', mode: '0755' },
      ],
    });
    const newcomer = await adHocPackage({
      name: 'newcomer',
      version: '1.0-r0',
      files: [
        { path: 'etc/shared', content: 'newcomer\n' },
        { path: 'etc/own', content: 'own\n' },
      ],
    });
    const tree = await assembleRootTree({ ...rootOptions(join(scratch, 'keep')), packages: [keeper, newcomer], world: ['keeper', 'newcomer'] });
    expect(await readFile(join(tree.dir, 'etc/shared'), 'utf8')).toBe('keeper\n');
    const [first, second] = (await readFile(join(tree.dir, 'lib/apk/db/installed'), 'utf8')).split('\n\n').map((block) => block.split('\n'));
    expect(first).toContain('R:shared');
    expect(first).toContain('r:newcomer');
    expect(first).toContain('q:10');
    expect(second!.slice(second!.indexOf('F:etc'))).toEqual(['F:etc', 'R:own', expect.stringMatching(/^Z:Q1/)]);
  });

  // Alpine's busybox APKBUILD writes etc/busybox-paths.d/busybox from `busybox --list-full`:
  // `bin/ls`, `sbin/init`, without a leading slash (what its post-install's --install -s makes).
  test("Alpine's applet list (paths without a leading /) gives the links, /sbin/init among them", async () => {
    const busybox = await adHocPackage({
      name: 'busybox',
      version: '1.36.1-r5',
      files: [
        { path: 'bin/busybox', source: HOST_BUSYBOX, mode: '0755' },
        { path: 'etc/busybox-paths.d/busybox', content: 'bin/busybox\nbin/ls\nsbin/init\nusr/bin/env\n' },
      ],
    });
    const tree = await assembleRootTree({ ...rootOptions(join(scratch, 'alpine-list')), packages: [busybox], world: ['busybox'] });
    for (const applet of ['bin/ls', 'sbin/init', 'usr/bin/env']) expect(await readlink(join(tree.dir, applet))).toBe('/bin/busybox');
    expect((await lstat(join(tree.dir, 'bin/busybox'))).isFile()).toBe(true);
  });

  test('a root without a usable /sbin/init is refused, naming what is missing; nothing is left', async () => {
    const cases: [string, PackageSpec['files'], RegExp][] = [
      ['no-init', [{ path: 'etc/issue', content: 'x' }], /^the root has no \/sbin\/init: /],
      [
        'dangling-init',
        [{ path: 'sbin/init', type: 'symlink', target: '/bin/busybox' }],
        /^the root's \/sbin\/init \(\/sbin\/init -> \/bin\/busybox\) points to nothing: \/bin\/busybox is missing$/,
      ],
      ['plain-init', [{ path: 'sbin/init', content: 'not a program', mode: '0644' }], /^the root's \/sbin\/init is not an executable file$/],
    ];
    for (const [name, files, message] of cases) {
      const outDir = join(scratch, name);
      const pkg = await adHocPackage({ name, version: '1.0-r0', files });
      const error = await assembleRootTree({ ...rootOptions(outDir), packages: [pkg], world: [name] }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RootWithoutInitError);
      expect((error as RootWithoutInitError).code).toBe('ROOT_WITHOUT_INIT');
      expect((error as Error).message).toMatch(message);
      await expect(lstat(outDir)).rejects.toThrow();
    }
  });

  test('etc/apk/repositories lists what the node reaches: a build host directory is refused, nodeRepositories leaves them out', async () => {
    const outDir = join(scratch, 'host-path');
    await expect(assembleRootTree({ ...rootOptions(outDir), repositories: ['https://example.invalid/repo', '/home/builder/repo'] })).rejects.toThrow(
      new ImageConfigError(
        'etc/apk/repositories line "/home/builder/repo" is not an http(s) URL: the image lists only repositories the node can reach, never a directory of the build host',
      ),
    );
    await expect(lstat(outDir)).rejects.toThrow();
    expect(nodeRepositories(['https://dl-cdn.alpinelinux.org/alpine/v3.18/main', '/home/builder/repo'], 'https://site.example/')).toEqual([
      'https://dl-cdn.alpinelinux.org/alpine/v3.18/main',
      'https://site.example/apk/psyopsOS',
    ]);
    expect(nodeRepositories(['/home/builder/host-repo'])).toEqual([]);
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
