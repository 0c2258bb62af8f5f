import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { buildPackage, readPackage } from '../src/index.ts';
import {
  formatInstalledDb,
  formatInstalledEntry,
  formatScriptsTar,
  formatTriggers,
  formatWorld,
  installedPackageOf,
  ownerOf,
  parseIdFile,
  sha1Checksum,
} from '../src/installed.ts';
import { readTar } from '../src/tar.ts';
import { DEP, EPOCH, HELLO } from './helpers.ts';

// Facts from apk-tools 2.14 database.c (apk_db_fdb_write, apk_db_scriptdb_write,
// apk_db_triggers_write): a block is the package's index entry, then `F:` per owned directory
// in archive order with `M:uid:gid:mode` only when not 0:0:755, `R:` per file with
// `a:uid:gid:mode` only when not 0:0:644 and `Z:` Q1+base64 SHA-1, then an empty line.

describe('installed database', () => {
  test('the abuild-made vector package, field by field', () => {
    const block = formatInstalledEntry(installedPackageOf(readPackage(HELLO), 'x86_64'));
    expect(block.split('\n')).toEqual([
      'C:Q179XfxHT1rir/gCZJ247Iwn1KuN4=',
      'P:psyops-hello',
      'V:1.0.0-r0',
      'A:x86_64',
      'S:1462',
      'I:28672',
      'T:Test package for psyops format notes',
      'U:https://example.invalid/psyops',
      'L:MIT',
      'o:psyops-hello',
      'm:Psyops Test <test@example.invalid>',
      't:1700000000',
      'c:0000000000000000000000000000000000000000',
      'D:/bin/sh',
      'F:etc',
      'F:etc/psyops',
      'R:hello.conf',
      // sha1 of the file content 6638a22b… in base64
      'Z:Q1ZjiiK+s69jpd3+O/DkNQgC3J3r4=',
      'F:usr',
      'F:usr/bin',
      'R:phello',
      'a:0:0:777', // a symlink: mode 0777, checksum of the target string
      'Z:Q17cWccWscPhZM3W4WgqgPO6/gHlU=',
      'R:psyops-hello',
      'a:0:0:755',
      'Z:Q16DeBE4vNoI6NfcQ+IO5W4AjT+VU=',
      '',
      '',
    ]);
  });

  test('blocks follow each other in install order, each ended by an empty line', () => {
    const db = formatInstalledDb([installedPackageOf(readPackage(DEP), 'x86_64'), installedPackageOf(readPackage(HELLO), 'x86_64')]);
    const blocks = db.split('\n\n').filter((b) => b !== '');
    expect(blocks.map((b) => b.split('\n')[1])).toEqual(['P:psyops-dep', 'P:psyops-hello']);
    expect(db.endsWith('Z:Q16DeBE4vNoI6NfcQ+IO5W4AjT+VU=\n\n')).toBe(true);
  });

  test('owners, special modes, top-level files, .keep_ files, replaces and scripts', async () => {
    const built = await buildPackage(
      {
        name: 'special',
        version: '1.0-r0',
        arch: 'x86_64',
        description: 'd',
        url: 'u',
        license: 'MIT',
        replaces: ['old-special'],
        replaces_priority: 5,
        triggers: ['/usr/share/special'],
        scripts: {
          'post-install': { content: '#!/bin/sh\necho post\n' },
          'pre-install': { content: '#!/bin/sh\necho pre\n' },
          trigger: { content: '#!/bin/sh\n' },
        },
        files: [
          { path: 'top.txt', content: 'top' },
          { path: 'srv/data', type: 'dir', mode: '0750', uid: 100, gid: 101 },
          { path: 'srv/data/file', content: 'x', uid: 100, gid: 101, mode: '0640' },
          { path: 'srv/data/.keep_data', content: '' },
          { path: 'usr/bin/suid', content: 'bin', mode: '4755' },
        ],
      },
      { sourceDateEpoch: EPOCH },
    );
    const pkg = readPackage(built.bytes);
    const installed = installedPackageOf(pkg, 'x86_64');
    const lines = formatInstalledEntry(installed).split('\n');
    const files = lines.slice(lines.indexOf('q:5') + 1);
    expect(lines).toContain('r:old-special');
    expect(files).toEqual([
      'F:srv',
      'F:srv/data',
      'M:100:101:750',
      'R:file',
      'a:100:101:640',
      `Z:${sha1Checksum('11f6ad8ec52a2984abaafd7c3b516503785c2072')}`, // sha1("x")
      'F:',
      'R:top.txt',
      `Z:Q1${createHash('sha1').update('top').digest('base64')}`,
      'F:usr',
      'F:usr/bin',
      'R:suid',
      'a:0:0:4755',
      expect.stringMatching(/^Z:Q1[A-Za-z0-9+/]{27}=$/),
      '',
      '',
    ]);

    // scripts.tar: apk's names and order (pre-install before post-install, trigger last), mode 0755, end blocks.
    const tar = formatScriptsTar([installed], EPOCH);
    const read = readTar(tar);
    expect(read.endMarker).toBe(true);
    expect(tar.length % 512).toBe(0);
    expect(read.entries.map((e) => e.path)).toEqual([
      `special-1.0-r0.${pkg.identity}.pre-install`,
      `special-1.0-r0.${pkg.identity}.post-install`,
      `special-1.0-r0.${pkg.identity}.trigger`,
    ]);
    expect(read.entries.map((e) => [e.mode, e.mtime, e.uname, e.data.toString()])[1]).toEqual([0o755, EPOCH, 'root', '#!/bin/sh\necho post\n']);

    expect(formatTriggers([installed, installedPackageOf(readPackage(HELLO))])).toBe(`${pkg.identity} /usr/share/special\n`);
  });

  test("owners are looked up by name in the target's passwd and group; unknown names keep the tar's numbers", async () => {
    const built = await buildPackage(
      {
        name: 'owned',
        version: '1.0-r0',
        arch: 'x86_64',
        description: 'd',
        url: 'u',
        license: 'MIT',
        files: [
          { path: 'var/lib/svc', type: 'dir', mode: '0750', uid: 100, gid: 101, uname: 'svc', gname: 'svc' },
          { path: 'var/lib/svc/known', content: 'k', uid: 100, gid: 101, uname: 'svc', gname: 'other' },
          { path: 'var/lib/svc/unnamed', content: 'u', uid: 102, gid: 103 },
        ],
      },
      { sourceDateEpoch: EPOCH },
    );
    const users = parseIdFile('root:x:0:0:root:/root:/bin/sh\nsvc:x:200:201::/var/lib/svc:/sbin/nologin\nbroken line\nsvc:x:999:999::/:/bin/sh\n');
    const groups = parseIdFile('root:x:0:root\nsvc:x:201:\n');
    expect([...users]).toEqual([
      ['root', 0],
      ['svc', 200],
    ]); // the first entry of a name counts
    const lines = formatInstalledEntry(installedPackageOf(readPackage(built.bytes)), { users, groups }).split('\n');
    expect(lines.filter((l) => /^[Ma]:/.test(l))).toEqual(['M:200:201:750', 'a:200:101:644', 'a:102:103:644']);
    expect(ownerOf({ uid: 5, gid: 6, uname: '', gname: '' }, { users, groups })).toEqual({ uid: 5, gid: 6 });
  });

  test('scripts.tar without scripts is just the end blocks', () => {
    expect(formatScriptsTar([installedPackageOf(readPackage(HELLO))], EPOCH)).toEqual(Buffer.alloc(1024));
  });

  test('world: sorted, unique, newline-terminated (apk writes a lone newline for an empty world)', () => {
    expect(formatWorld(['zlib', 'busybox', 'alpine-base>=3', 'busybox'])).toBe('alpine-base>=3\nbusybox\nzlib\n');
    expect(formatWorld([])).toBe('\n');
  });
});
