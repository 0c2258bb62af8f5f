import { describe, expect, it } from 'vitest';
import { resolve, UnsatisfiableError, type IndexEntry, type RepositoryIndex } from '../src/index.ts';

let counter = 0;
function pkg(name: string, version: string, extra: Partial<IndexEntry> = {}): IndexEntry {
  counter++;
  return {
    identity: `Q1${String(counter).padStart(27, 'A')}=`,
    name,
    version,
    size: 1,
    installedSize: 1,
    description: '',
    url: '',
    license: '',
    depends: [],
    provides: [],
    installIf: [],
    ...extra,
  };
}

const names = (result: ReturnType<typeof resolve>) => result.map((r) => `${r.entry.name}-${r.entry.version}`);

describe('resolve', () => {
  const main: RepositoryIndex = {
    entries: [
      pkg('musl', '1.2.4-r2', { provides: ['so:libc.musl-x86_64.so.1=1'] }),
      pkg('busybox', '1.36.1-r5', { depends: ['so:libc.musl-x86_64.so.1'], provides: ['/bin/sh', 'cmd:sh=1.36.1-r5'] }),
      pkg('busybox', '1.35.0-r1', { depends: ['so:libc.musl-x86_64.so.1'] }),
      pkg('zlib', '1.3-r0', { depends: ['so:libc.musl-x86_64.so.1'], provides: ['so:libz.so.1=1.3', 'pc:zlib=1.3'] }),
      pkg('app', '2.0-r0', { depends: ['so:libz.so.1', 'cmd:sh', 'busybox>=1.36'] }),
      pkg('app-doc', '2.0-r0', { installIf: ['app=2.0-r0', 'docs'] }),
      pkg('docs', '1-r0'),
      pkg('pinned', '1.0-r0', { depends: ['busybox<1.36'] }),
      pkg('fuzzy', '1.0-r0', { depends: ['zlib~1.3'] }),
      pkg('needs-missing', '1.0-r0', { depends: ['so:libmissing.so.3'] }),
      pkg('top', '1.0-r0', { depends: ['needs-missing'] }),
      pkg('openrc', '0.52-r0', { depends: ['!sysvinit'] }),
      pkg('sysvinit', '3.0-r0'),
      pkg('virt-user', '1.0-r0', { depends: ['/bin/sh'] }),
    ],
  };

  it('returns the install set in dependency order, resolving so:/cmd:/pc: provides', () => {
    const result = resolve(['app'], [main]);
    expect(names(result)).toEqual(['musl-1.2.4-r2', 'busybox-1.36.1-r5', 'zlib-1.3-r0', 'app-2.0-r0']);
    expect(names(resolve(['pc:zlib'], [main]))).toEqual(['musl-1.2.4-r2', 'zlib-1.3-r0']);
  });

  it('honours version constraints (>=, <, =, ~)', () => {
    expect(names(resolve(['busybox<1.36'], [main]))).toEqual(['musl-1.2.4-r2', 'busybox-1.35.0-r1']);
    expect(names(resolve(['busybox=1.35.0-r1'], [main]))).toContain('busybox-1.35.0-r1');
    expect(names(resolve(['busybox>=1.36'], [main]))).toContain('busybox-1.36.1-r5');
    expect(names(resolve(['fuzzy'], [main]))).toContain('zlib-1.3-r0');
    expect(() => resolve(['busybox>2'], [main])).toThrow(/no candidate fits \(available: busybox-1.36.1-r5, busybox-1.35.0-r1\)/);
  });

  it('names the chain when a world is unsatisfiable', () => {
    try {
      resolve(['top'], [main]);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(UnsatisfiableError);
      expect((error as UnsatisfiableError).chain).toEqual(['world', 'top-1.0-r0', 'needs-missing-1.0-r0', 'so:libmissing.so.3']);
      expect((error as Error).message).toBe('unsatisfiable: world -> top-1.0-r0 -> needs-missing-1.0-r0 -> so:libmissing.so.3: no package provides it');
    }
  });

  it('reports conflicting constraints from two paths', () => {
    expect(() => resolve(['app', 'pinned'], [main])).toThrow(/world -> pinned-1.0-r0 -> busybox<1.36: busybox-1.36.1-r5 is already selected/);
  });

  it('honours !conflicts', () => {
    expect(() => resolve(['openrc', 'sysvinit'], [main])).toThrow(
      /world -> openrc-0.52-r0 -> !sysvinit: sysvinit-3.0-r0 is already selected \(required by world\)/,
    );
    expect(() => resolve(['sysvinit', 'openrc'], [main])).toThrow(/openrc-0.52-r0 -> !sysvinit: sysvinit-3.0-r0 is already selected/);
    expect(() => resolve(['busybox', '!busybox'], [main])).toThrow(UnsatisfiableError);
    expect(names(resolve(['openrc'], [main]))).toEqual(['openrc-0.52-r0']);
  });

  it('does not pick a provider of a pure virtual name (provides without version) on its own', () => {
    expect(() => resolve(['virt-user'], [main])).toThrow(/only provided as a virtual name by busybox-1.36.1-r5: select one of them explicitly/);
    expect(names(resolve(['busybox', 'virt-user'], [main]))).toEqual(['musl-1.2.4-r2', 'busybox-1.36.1-r5', 'virt-user-1.0-r0']);
  });

  it('adds install_if packages once all their conditions are installed', () => {
    expect(names(resolve(['app'], [main]))).not.toContain('app-doc-2.0-r0');
    expect(names(resolve(['app', 'docs'], [main]))).toContain('app-doc-2.0-r0');
  });

  it('prefers the repository with higher priority, then the higher version, then the earlier repository', () => {
    const local: RepositoryIndex = { entries: [pkg('busybox', '1.30-r0', { depends: ['so:libc.musl-x86_64.so.1'] })], priority: 10 };
    const result = resolve(['busybox'], [main, local]);
    expect(result.find((r) => r.entry.name === 'busybox')).toMatchObject({ repository: 1, entry: { version: '1.30-r0' } });
    const same: RepositoryIndex = { entries: [pkg('docs', '1-r0')] };
    expect(resolve(['docs'], [same, main])[0]!.repository).toBe(0);
    expect(resolve(['docs'], [main, same])[0]!.repository).toBe(0);
    const newer: RepositoryIndex = { entries: [pkg('docs', '2-r0')] };
    expect(resolve(['docs'], [main, newer])[0]).toMatchObject({ repository: 1, entry: { version: '2-r0' } });
  });

  it('uses tagged repositories only for name@tag', () => {
    const edge: RepositoryIndex = { entries: [pkg('docs', '9-r0')], tag: 'edge' };
    expect(resolve(['docs'], [main, edge])[0]!.entry.version).toBe('1-r0');
    expect(resolve(['docs@edge'], [main, edge])[0]!.entry.version).toBe('9-r0');
    expect(resolve(['sysvinit@edge'], [main, edge])[0]!.entry.version).toBe('3.0-r0');
    expect(() => resolve(['docs@other'], [edge])).toThrow(/no candidate fits/);
  });

  it('refuses invalid world entries with a typed error', () => {
    expect(() => resolve(['busybox>=x.y'], [main])).toThrow(/not a valid version/);
  });
});
