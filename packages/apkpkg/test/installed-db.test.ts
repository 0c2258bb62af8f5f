import { describe, expect, test } from 'vitest';
import { buildPackage, readPackage } from '../src/index.ts';
import { formatInstalledDb, formatScriptsTar, formatTriggers, installedPackageOf, parseInstalledDb } from '../src/installed.ts';
import { readTar } from '../src/tar.ts';
import { DEP, EPOCH, HELLO } from './helpers.ts';

async function built(spec: Record<string, unknown> & { name: string }) {
  const { bytes } = await buildPackage(
    { version: '1.0-r0', arch: 'x86_64', description: 'd', url: 'u', license: 'MIT', files: [], ...spec } as Parameters<typeof buildPackage>[0],
    { sourceDateEpoch: EPOCH },
  );
  return installedPackageOf(readPackage(bytes), 'x86_64');
}

describe('lib/apk/db/installed read back with apk 2.14 rules (database.c apk_db_fdb_read)', () => {
  test('round trip: every block, index field, directory, ACL and checksum comes back', async () => {
    const special = await built({
      name: 'special',
      replaces: ['psyops-hello'],
      replaces_priority: 3,
      files: [
        { path: 'top.txt', content: 'top' },
        { path: 'srv/data', type: 'dir', mode: '0750', uid: 100, gid: 101 },
        { path: 'srv/data/file', content: 'x', uid: 100, gid: 101, mode: '0640' },
      ],
    });
    const packages = [installedPackageOf(readPackage(DEP), 'x86_64'), installedPackageOf(readPackage(HELLO), 'x86_64'), special];
    const db = parseInstalledDb(formatInstalledDb(packages));
    expect(db.map((e) => [e.fields.get('C'), e.fields.get('P'), e.fields.get('V'), e.fields.get('A')])).toEqual(
      packages.map(({ entry }) => [entry.identity, entry.name, entry.version, 'x86_64']),
    );
    expect(db[1]!.dirs).toEqual([
      { name: 'etc', files: [] },
      { name: 'etc/psyops', files: [{ name: 'hello.conf', checksum: 'Q1ZjiiK+s69jpd3+O/DkNQgC3J3r4=' }] },
      { name: 'usr', files: [] },
      {
        name: 'usr/bin',
        files: [
          { name: 'phello', acl: '0:0:777', checksum: 'Q17cWccWscPhZM3W4WgqgPO6/gHlU=' },
          { name: 'psyops-hello', acl: '0:0:755', checksum: 'Q16DeBE4vNoI6NfcQ+IO5W4AjT+VU=' },
        ],
      },
    ]);
    expect(db[2]).toMatchObject({ replaces: ['psyops-hello'], replacesPriority: 3 });
    // Archive order (abuild sorts paths), the top-level file under the root's empty F: name.
    expect(db[2]!.dirs.map((d) => [d.name, d.acl, d.files.map((f) => [f.name, f.acl])])).toEqual([
      ['srv', undefined, []],
      ['srv/data', '100:101:750', [['file', '100:101:640']]],
      ['', undefined, [['top.txt', undefined]]],
    ]);
  });

  test('one owner per file: a file two packages list belongs to the later one (apk_db_migrate_files moves it)', async () => {
    const first = await built({
      name: 'first',
      files: [
        { path: 'etc/shared', content: '1' },
        { path: 'etc/first', content: 'f' },
      ],
    });
    const second = await built({ name: 'second', replaces: ['first'], files: [{ path: 'etc/shared', content: '2' }] });
    const [a, b] = parseInstalledDb(formatInstalledDb([first, second]));
    // The first package keeps its directory instance (F:etc) but no longer lists the file.
    expect(a!.dirs).toEqual([{ name: 'etc', files: [{ name: 'first', checksum: expect.any(String) }] }]);
    expect(b!.dirs).toEqual([{ name: 'etc', files: [{ name: 'shared', checksum: expect.any(String) }] }]);
  });

  test.each([
    ['R: before any F:', 'C:Q1x\nP:a\nV:1\nR:file\n\n', /line 4 .*R: outside a directory/],
    ['Z: before any R:', 'C:Q1x\nP:a\nV:1\nF:etc\nZ:Q1y\n\n', /line 5 .*Z: outside a file/],
    ['F: before the package name', 'C:Q1x\nF:etc\nP:a\n\n', /line 2 .*F: before the package name/],
    ['a letter apk does not know ("This apk-tools is too old")', 'C:Q1x\nP:a\nV:1\nX:new\n\n', /line 4 .*unknown field X:/],
    ['a line without "X:"', 'C:Q1x\nPa\n\n', /line 2 .*not a field/],
    ['a last block without its empty line (apk would drop the package)', 'C:Q1x\nP:a\nV:1\n', /ends inside a block \(a\)/],
  ])('refuses what apk refuses or loses: %s', (_why, text, message) => {
    expect(() => parseInstalledDb(text)).toThrow(message);
  });
});

describe('scripts.tar and triggers as apk reads them back', () => {
  test('script names split from the right as apk_read_script_archive_entry does: <name>-<version>.<Q1 identity>.<action>', async () => {
    const pkg = await built({
      name: 'dotted.name',
      version: '1.2.3_rc1-r4',
      scripts: { 'post-upgrade': { content: '#!/bin/sh\n' }, 'pre-install': { content: '#!/bin/sh\n' }, trigger: { content: '#!/bin/sh\n' } },
      triggers: ['/usr/share/fonts/*', '/etc/ssl/certs'],
    });
    const names = readTar(formatScriptsTar([pkg], EPOCH)).entries.map((e) => e.path);
    // apk: the action is after the last '.', the checksum between the '.' before it and that one.
    const parsed = names.map((name) => {
      const action = name.lastIndexOf('.');
      const checksum = name.lastIndexOf('.', action - 1);
      return [name.slice(checksum + 1, action), name.slice(action + 1)];
    });
    expect(parsed).toEqual([
      [pkg.entry.identity, 'pre-install'],
      [pkg.entry.identity, 'post-upgrade'],
      [pkg.entry.identity, 'trigger'],
    ]);
    // database.c apk_db_triggers_write: the identity, then each trigger after one space, then a newline.
    expect(formatTriggers([pkg])).toBe(`${pkg.entry.identity} /usr/share/fonts/* /etc/ssl/certs\n`);
  });
});
