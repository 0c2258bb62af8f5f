import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { controlTar, dataTar, type DataEntry } from '../src/archive.ts';
import { gzipMember, sha256 } from '../src/gzip.ts';
import { formatPkgInfo } from '../src/pkginfo.ts';
import { padding, tarHeader } from '../src/tar.ts';
import { extractPackage, readPackage, UnsafeEntryError } from '../src/index.ts';
import { EPOCH, HELLO, tempDir } from './helpers.ts';

/** An unsigned package around a hand-made data tar (bypassing the builder's own path checks). */
function craft(data: Buffer): Buffer {
  const dataGz = gzipMember(data);
  const info = formatPkgInfo(
    {
      pkgname: 'evil',
      pkgver: '1.0-r0',
      size: 4096,
      replaces: [],
      depend: [],
      provides: [],
      triggers: [],
      install_if: [],
      datahash: sha256(dataGz).toString('hex'),
    },
    'test',
  );
  return Buffer.concat([gzipMember(controlTar([{ name: '.PKGINFO', data: Buffer.from(info), mode: 0o644 }], EPOCH)), dataGz]);
}

const root = (path: string, extra: Partial<DataEntry> = {}): DataEntry => ({
  path,
  type: 'dir',
  mode: 0o755,
  uid: 0,
  gid: 0,
  uname: 'root',
  gname: 'root',
  ...extra,
});

function deviceTar(): Buffer {
  return Buffer.concat([
    tarHeader({ name: 'dev/', mode: 0o755, size: 0, mtime: EPOCH, type: 'dir', style: 'posix' }),
    tarHeader({ name: 'dev/null', mode: 0o666, size: 0, mtime: EPOCH, type: 'char', style: 'posix' }),
    tarHeader({ name: 'etc/', mode: 0o755, size: 0, mtime: EPOCH, type: 'dir', style: 'posix' }),
    tarHeader({ name: 'etc/a', mode: 0o644, size: 2, mtime: EPOCH, type: 'file', style: 'posix' }),
    Buffer.from('a\n'),
    padding(2),
    Buffer.alloc(1024),
  ]);
}

describe('extractPackage', () => {
  it('extracts the vector package keeping modes, symlinks and timestamps', async () => {
    const dir = tempDir('extract');
    const result = await extractPackage(readPackage(HELLO), dir);
    expect(result).toMatchObject({ files: 2, directories: 4, symlinks: 1 });
    expect(readFileSync(join(dir, 'etc/psyops/hello.conf'), 'utf8')).toBe('greeting=hello\n');
    expect(statSync(join(dir, 'usr/bin/psyops-hello')).mode & 0o7777).toBe(0o755);
    expect(statSync(join(dir, 'etc/psyops/hello.conf')).mode & 0o7777).toBe(0o644);
    expect(readlinkSync(join(dir, 'usr/bin/phello'))).toBe('psyops-hello');
    expect(statSync(join(dir, 'etc/psyops/hello.conf')).mtimeMs).toBe(EPOCH * 1000);
  });

  const evil: [string, DataEntry[], RegExp][] = [
    ['a path with ..', [root('etc'), root('../outside', { type: 'file', mode: 0o644, data: Buffer.from('x') })], /refusing archive entry "..\/outside"/],
    ['a nested path with ..', [root('etc'), root('etc/../../outside', { type: 'file', mode: 0o644, data: Buffer.from('x') })], /refusing archive entry/],
    ['an absolute path', [root('/tmp/outside', { type: 'file', mode: 0o644, data: Buffer.from('x') })], /refusing archive entry "\/tmp\/outside"/],
    [
      'a symlink climbing out',
      [root('etc'), root('etc/link', { type: 'symlink', mode: 0o777, target: '../../outside' })],
      /points outside the target directory/,
    ],
  ];
  it.each(evil)('refuses %s and writes nothing', async (_what, entries, message) => {
    const dir = tempDir('evil');
    const target = join(dir, 'root');
    const pkg = readPackage(craft(dataTar(entries, EPOCH)));
    await expect(extractPackage(pkg, target)).rejects.toThrow(UnsafeEntryError);
    await expect(extractPackage(pkg, target)).rejects.toThrow(message);
    expect(existsSync(target)).toBe(false);
    expect(existsSync(join(dir, 'outside'))).toBe(false);
  });

  it('accepts absolute symlink targets (they resolve inside the root, as in a chroot) and relative ones that stay inside', async () => {
    const dir = tempDir('links');
    const entries = [
      root('bin'),
      root('bin/sh', { type: 'symlink', mode: 0o777, target: '/bin/busybox' }),
      root('usr'),
      root('usr/bin'),
      root('usr/bin/x', { type: 'symlink', mode: 0o777, target: '../../bin/sh' }),
    ];
    await extractPackage(readPackage(craft(dataTar(entries, EPOCH))), dir);
    expect(readlinkSync(join(dir, 'bin/sh'))).toBe('/bin/busybox');
    expect(readlinkSync(join(dir, 'usr/bin/x'))).toBe('../../bin/sh');
  });

  it('never writes through a symlink already in the target', async () => {
    const dir = tempDir('through');
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    const target = join(dir, 'root');
    mkdirSync(target);
    symlinkSync(outside, join(target, 'etc'));
    const pkg = readPackage(craft(dataTar([root('etc'), root('etc/passwd', { type: 'file', mode: 0o644, data: Buffer.from('x') })], EPOCH)));
    await expect(extractPackage(pkg, target)).rejects.toThrow(/something else exists there|is a symlink/);
    expect(existsSync(join(outside, 'passwd'))).toBe(false);
    expect(lstatSync(join(target, 'etc')).isSymbolicLink()).toBe(true);
  });

  it('refuses device nodes unless allowed, then skips and reports them', async () => {
    const dir = tempDir('dev');
    const pkg = readPackage(craft(deviceTar()));
    await expect(extractPackage(pkg, join(dir, 'a'))).rejects.toThrow(/refusing device node dev\/null \(char\)/);
    expect(existsSync(join(dir, 'a'))).toBe(false);
    const result = await extractPackage(pkg, join(dir, 'b'), { allowDevices: true });
    expect(result.skippedDevices).toEqual([{ path: 'dev/null', type: 'char', mode: 0o666 }]);
    expect(readFileSync(join(dir, 'b/etc/a'), 'utf8')).toBe('a\n');
  });
});
