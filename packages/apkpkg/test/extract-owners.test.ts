import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileConflictError } from '../src/errors.ts';
import { extractPackage, type FileOwner, fileOwnerOf, overwriteRule } from '../src/extract.ts';
import { buildPackage, readPackage, type PackageSpec } from '../src/index.ts';
import { EPOCH, tempDir } from './helpers.ts';

// The rules are apk-tools 2.14's, database.c apk_db_install_file, for a non-directory entry whose
// path the database already lists for another package (`opkg`):
// - same package name (an upgrade) or same non-empty origin: overwritten, no message;
// - opkg_prio = opkg's replaces_priority when one of opkg's `replaces` is materialized by the new
//   package (apk_dep_is_materialized: the dependency names that very package, not a provided
//   name, and its version matches), else -1; pkg_prio likewise for the new package's `replaces`;
// - opkg_prio > pkg_prio: the file is skipped, opkg keeps it;
// - pkg_prio >= 0: overwritten without a warning (ownership moves, apk_db_migrate_files);
// - otherwise: "trying to overwrite <path> owned by <opkg>", the package counts as broken, and
//   the file is not written.

const owner = (name: string, extra: Partial<FileOwner> = {}): FileOwner => ({
  name,
  version: '1.2-r0',
  identity: `Q1${name.padEnd(27, 'x')}=`,
  replaces: [],
  replacesPriority: 0,
  ...extra,
});

describe('overwriteRule: apk_db_install_file', () => {
  it.each([
    ['the same package name (an upgrade)', owner('a'), owner('a', { version: '2.0-r0' }), 'overwrite'],
    ['the same origin (subpackages of one APKBUILD)', owner('a-doc', { origin: 'a' }), owner('a-dev', { origin: 'a' }), 'overwrite'],
    ['neither replaces the other', owner('a'), owner('b'), 'conflict'],
    ['different origins, no replaces', owner('a', { origin: 'x' }), owner('b', { origin: 'y' }), 'conflict'],
    ['the new package replaces the owner (priority 0 counts)', owner('a'), owner('b', { replaces: ['a'] }), 'overwrite'],
    ['the owner replaces the new package: the owner keeps it', owner('a', { replaces: ['b'] }), owner('b'), 'keep'],
    [
      'both replace, the owner has the higher priority',
      owner('a', { replaces: ['b'], replacesPriority: 5 }),
      owner('b', { replaces: ['a'], replacesPriority: 1 }),
      'keep',
    ],
    ['both replace with equal priorities: the new one wins', owner('a', { replaces: ['b'] }), owner('b', { replaces: ['a'] }), 'overwrite'],
    [
      'both replace, the new one has the higher priority',
      owner('a', { replaces: ['b'], replacesPriority: 1 }),
      owner('b', { replaces: ['a'], replacesPriority: 3 }),
      'overwrite',
    ],
    ['replaces with a version range the owner is in', owner('a'), owner('b', { replaces: ['a<2'] }), 'overwrite'],
    ['replaces with a version range the owner is not in', owner('a'), owner('b', { replaces: ['a>=2'] }), 'conflict'],
    ['replaces names a virtual the owner provides, not the owner', owner('a'), owner('b', { replaces: ['cmd:a'] }), 'conflict'],
  ] as const)('%s', (_why, installed, incoming, rule) => {
    expect(overwriteRule(installed, incoming)).toBe(rule);
  });
});

async function pkg(spec: Partial<PackageSpec> & Pick<PackageSpec, 'name' | 'files'>) {
  const built = await buildPackage({ version: '1.0-r0', arch: 'x86_64', description: 'd', url: 'u', license: 'MIT', ...spec }, { sourceDateEpoch: EPOCH });
  return readPackage(built.bytes);
}

describe('extractPackage with owners', () => {
  it('refuses a file another package owns, naming both packages and the path, before writing anything', async () => {
    const dir = tempDir('owners-conflict');
    const owners = new Map<string, FileOwner>();
    const first = await pkg({ name: 'first', files: [{ path: 'etc/shared', content: 'first\n' }] });
    const second = await pkg({
      name: 'second',
      version: '2.0-r1',
      files: [
        { path: 'etc/a-second-only', content: 'x' },
        { path: 'etc/shared', content: 'second\n' },
        { path: 'etc/zz', content: 'y' },
      ],
    });
    await extractPackage(first, dir, { owners });
    const error = await extractPackage(second, dir, { owners }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FileConflictError);
    expect((error as FileConflictError).code).toBe('APK_FILE_CONFLICT');
    expect((error as Error).message).toBe('second-2.0-r1 would overwrite etc/shared owned by first-1.0-r0: neither package replaces the other');
    expect(readFileSync(join(dir, 'etc/shared'), 'utf8')).toBe('first\n');
    expect(existsSync(join(dir, 'etc/a-second-only'))).toBe(false);
    expect([...owners].map(([path, o]) => [path, o.name])).toEqual([['etc/shared', 'first']]);
  });

  it('with replaces the later package overwrites the file and becomes its owner', async () => {
    const dir = tempDir('owners-replace');
    const owners = new Map<string, FileOwner>();
    const first = await pkg({ name: 'first', files: [{ path: 'etc/shared', content: 'first\n' }] });
    const second = await pkg({ name: 'second', replaces: ['first'], files: [{ path: 'etc/shared', content: 'second\n' }] });
    await extractPackage(first, dir, { owners });
    expect((await extractPackage(second, dir, { owners })).kept).toEqual([]);
    expect(readFileSync(join(dir, 'etc/shared'), 'utf8')).toBe('second\n');
    expect(owners.get('etc/shared')).toEqual(fileOwnerOf(second));
    expect(owners.has('etc')).toBe(false); // directories are shared, nobody owns them
  });

  it('an owner that replaces the newcomer with a higher priority keeps its file; the rest is installed', async () => {
    const dir = tempDir('owners-keep');
    const owners = new Map<string, FileOwner>();
    const first = await pkg({ name: 'first', replaces: ['second'], replaces_priority: 10, files: [{ path: 'etc/shared', content: 'first\n' }] });
    const second = await pkg({
      name: 'second',
      files: [
        { path: 'etc/shared', content: 'second\n' },
        { path: 'etc/own', content: 'own\n' },
      ],
    });
    await extractPackage(first, dir, { owners });
    const result = await extractPackage(second, dir, { owners });
    expect(result.kept).toEqual(['etc/shared']);
    expect(readFileSync(join(dir, 'etc/shared'), 'utf8')).toBe('first\n');
    expect(readFileSync(join(dir, 'etc/own'), 'utf8')).toBe('own\n');
    expect(owners.get('etc/shared')?.name).toBe('first');
    expect(owners.get('etc/own')?.name).toBe('second');
  });

  it('without owners, extraction replaces files as before (no ownership rules)', async () => {
    const dir = tempDir('owners-none');
    await extractPackage(await pkg({ name: 'first', files: [{ path: 'etc/shared', content: 'first\n' }] }), dir);
    const result = await extractPackage(await pkg({ name: 'second', files: [{ path: 'etc/shared', content: 'second\n' }] }), dir);
    expect(result.kept).toEqual([]);
    expect(readFileSync(join(dir, 'etc/shared'), 'utf8')).toBe('second\n');
  });
});
