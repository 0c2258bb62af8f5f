import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildPackage, indexEntryOf, readPackage, type PackageSpec } from '@psyops/apkpkg';
import type { InstalledPackage } from '@psyops/apkpkg/format';
import { execa } from 'execa';
import { databaseDirectories, FIRSTBOOT_DIR, firedTriggers, firstBootPlan, matchesTrigger } from '../src/firstboot.js';
import type { FetchedPackage } from '../src/packages.js';
import { assembleRootTree } from '../src/rootfs.js';
import { FIXTURE_ARCH, FIXTURE_EPOCH, HOST_BUSYBOX } from './fixtures/repository.js';

// apk-tools 2.14, the order of a fresh `apk add` of packages P1..Pn (database.c apk_db_install_pkg,
// apk_db_unpack_pkg; commit.c run_triggers; package.c apk_ipkg_run_script):
// - for each package in install order: pre-install (run before its first file is written), its
//   files, post-install; each script executed directly (execve: its #! line picks the
//   interpreter) with argv = [script type, new version];
// - after every package: fire_triggers matches each trigger pattern (only those starting with
//   "/") with fnmatch(FNM_PATHNAME) against the rooted name of every directory in the database
//   (all of them, since a newly installed package has run_all_triggers), each directory once;
// - then, in changeset (install) order, each package with matches runs its trigger script with
//   those directories as arguments; without a trigger script nothing runs.

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'imagebuild-firstboot-'));
});
afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

type Spec = Omit<PackageSpec, 'arch' | 'url' | 'license' | 'description' | 'version'> & { version?: string };

async function built(spec: Spec): Promise<{ installed: InstalledPackage; fetched: FetchedPackage }> {
  const pkg = await buildPackage(
    { version: '1.0-r0', arch: FIXTURE_ARCH, url: 'u', license: 'MIT', description: 'd', ...spec },
    { sourceDateEpoch: FIXTURE_EPOCH },
  );
  const path = join(scratch, pkg.fileName);
  await writeFile(path, pkg.bytes);
  const read = readPackage(pkg.bytes);
  const entry = indexEntryOf(read, FIXTURE_ARCH);
  return { installed: { entry, pkg: read }, fetched: { entry, path } };
}

describe('trigger patterns: fnmatch with FNM_PATHNAME on rooted directory names', () => {
  test.each([
    ['/etc/ssl/certs', '/etc/ssl/certs', true],
    ['/etc/ssl/certs', '/etc/ssl/certs/extra', false],
    ['/usr/share/fonts/*', '/usr/share/fonts/misc', true],
    ['/usr/share/fonts/*', '/usr/share/fonts/misc/extra', false], // * does not cross a /
    ['/usr/share/fonts/*', '/usr/share/fonts', false],
    ['/usr/lib/gdk-pixbuf-2.0/*/loaders', '/usr/lib/gdk-pixbuf-2.0/2.10.0/loaders', true],
    ['/lib/modules/?.*', '/lib/modules/6.1', true],
    ['/lib/modules/?.*', '/lib/modules/a/b', false],
    ['/usr/lib/[ab]*', '/usr/lib/apk', true],
    ['/usr/lib/[!ab]*', '/usr/lib/apk', false],
    ['usr/share/fonts', '/usr/share/fonts', false], // apk skips patterns without a leading /
  ])('%s against %s: %s', (pattern, dir, matches) => {
    expect(matchesTrigger(pattern, dir)).toBe(matches);
  });
});

describe('which triggers fire', () => {
  test('the database directories are every package directory, the root for top-level files, and all parents', async () => {
    const a = await built({
      name: 'a',
      files: [
        { path: 'usr/share/ca-certificates/mozilla/x.crt', content: 'x' },
        { path: 'top', content: 't' },
      ],
    });
    expect(databaseDirectories([a.installed])).toEqual(['/', '/usr', '/usr/share', '/usr/share/ca-certificates', '/usr/share/ca-certificates/mozilla']);
  });

  test("busybox's and ca-certificates' triggers: the matching directories that exist, in install order; none without a match or a script", async () => {
    const busybox = await built({
      name: 'busybox',
      triggers: ['/bin', '/usr/bin', '/sbin', '/usr/sbin', '/etc/busybox-paths.d'],
      scripts: { trigger: { content: '#!/bin/sh\n' } },
      files: [
        { path: 'bin/busybox', content: 'b', mode: '0755' },
        { path: 'etc/busybox-paths.d/busybox', content: 'bin/sh\n' },
      ],
    });
    const certs = await built({
      name: 'ca-certificates',
      triggers: ['/usr/share/ca-certificates', '/usr/local/share/ca-certificates', '/etc/ssl/certs'],
      scripts: { trigger: { content: '#!/bin/sh\n' } },
      files: [
        { path: 'usr/share/ca-certificates/mozilla/a.crt', content: 'a' },
        { path: 'etc/ssl/certs', type: 'dir' },
      ],
    });
    const unmatched = await built({
      name: 'fonts',
      triggers: ['/usr/share/fonts/*'],
      scripts: { trigger: { content: '#!/bin/sh\n' } },
      files: [{ path: 'etc/fonts', content: 'f' }],
    });
    const fired = firedTriggers([certs.installed, unmatched.installed, busybox.installed]);
    expect(fired.map((f) => [f.installed.entry.name, f.directories])).toEqual([
      ['ca-certificates', ['/etc/ssl/certs', '/usr/share/ca-certificates']],
      ['busybox', ['/bin', '/etc/busybox-paths.d']],
    ]);
  });

  test('the plan: pre-install then post-install per package in install order, then the triggers, each wrapper executing the package script with apk arguments', async () => {
    const a = await built({
      name: 'a',
      scripts: { 'post-install': { content: '#!/bin/sh\n' }, 'pre-install': { content: '#!/bin/sh\n' }, 'post-upgrade': { content: '#!/bin/sh\n' } },
      files: [{ path: 'etc/a', content: 'a' }],
    });
    const b = await built({
      name: 'b',
      version: '2.0_rc1-r3',
      triggers: ['/etc'],
      scripts: { trigger: { content: '#!/bin/sh\n' }, 'post-install': { content: '#!/bin/sh\n' } },
      files: [{ path: 'etc/b', content: 'b' }],
    });
    const plan = firstBootPlan([a.installed, b.installed], { busyboxInstall: false });
    // /init runs <key>.pre-install then <key>.post-install for each key in ls order.
    expect(plan.runs).toEqual(['0001-a.pre-install', '0001-a.post-install', '0002-b.post-install', '0003-b.trigger.post-install']);
    expect(plan.files.map((f) => f.name).filter((n) => n.startsWith('exec/'))).toEqual([
      'exec/a-1.0-r0.pre-install',
      'exec/a-1.0-r0.post-install',
      'exec/b-2.0_rc1-r3.post-install',
      'exec/b-2.0_rc1-r3.trigger',
    ]);
    const text = (name: string) => plan.files.find((f) => f.name === name)!.data.toString();
    expect(text('0002-b.post-install').split('\n')[2]).toBe(`exec /${FIRSTBOOT_DIR}/exec/b-2.0_rc1-r3.post-install '2.0_rc1-r3'`);
    expect(text('0003-b.trigger.post-install').split('\n')[2]).toBe(`exec /${FIRSTBOOT_DIR}/exec/b-2.0_rc1-r3.trigger '/etc'`);
  });
});

// Runs the scripts of an assembled root for real, chrooted with the host's static busybox as
// /bin/sh, through the same loop as /init's (init-script.ts): needs root for chroot.
describe.skipIf(process.getuid?.() !== 0)('first boot, for real', () => {
  test('scripts and triggers run in apk order, each executed with apk arguments', async () => {
    const log = (what: string) => ({ content: `#!/bin/sh\necho "${what} $*" >> /order.log\n` });
    const busybox = await built({
      name: 'busybox',
      version: '1.36.1-r5',
      files: [
        { path: 'bin/busybox', source: HOST_BUSYBOX, mode: '0755' },
        { path: 'etc/busybox-paths.d/busybox', content: 'bin/sh\nbin/ls\nbin/sed\nbin/sort\nsbin/init\n' },
      ],
    });
    const first = await built({
      name: 'first',
      triggers: ['/usr/share/first/*'],
      scripts: { 'pre-install': log('first pre-install'), 'post-install': log('first post-install'), trigger: log('first trigger') },
      files: [
        { path: 'usr/share/first/b', type: 'dir' },
        { path: 'usr/share/first/a', type: 'dir' },
      ],
    });
    const second = await built({
      name: 'second',
      version: '2.0-r1',
      triggers: ['/etc/second'],
      scripts: { 'post-install': log('second post-install'), trigger: log('second trigger') },
      files: [{ path: 'etc/second/conf', content: 'c' }],
    });
    const tree = await assembleRootTree({
      packages: [busybox.fetched, first.fetched, second.fetched],
      world: ['first', 'second'],
      repositories: [],
      keysDirs: [],
      arch: FIXTURE_ARCH,
      outDir: join(scratch, 'root'),
      mtime: FIXTURE_EPOCH,
    });
    const loop = [
      `FIRSTBOOT=/${FIRSTBOOT_DIR}`,
      `for package in $(ls "$FIRSTBOOT" | sed -e 's/\\.pre-install$//' -e 's/\\.post-install$//' | sort -u); do`,
      '  for phase in pre-install post-install; do',
      '    script=$package.$phase',
      '    [ -f "$FIRSTBOOT/$script" ] || continue',
      // /init also redirects stdin from /dev/null, which it bind-mounts; this tree has no /dev.
      '    /bin/sh "$FIRSTBOOT/$script" 2>> /errors.log || echo "failed $script" >> /order.log',
      '  done',
      'done',
    ].join('\n');
    await execa('chroot', [tree.dir, '/bin/sh', '-c', loop], { timeout: 30_000 });
    expect(await readFile(join(tree.dir, 'errors.log'), 'utf8').catch(() => '')).toBe('');
    expect((await readFile(join(tree.dir, 'order.log'), 'utf8')).split('\n')).toEqual([
      'first pre-install 1.0-r0',
      'first post-install 1.0-r0',
      'second post-install 2.0-r1',
      'first trigger /usr/share/first/a /usr/share/first/b',
      'second trigger /etc/second',
      '',
    ]);
  });
});
