import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseDependency, parseProvided, versionSatisfies } from '../src/dependency.ts';
import { type IndexEntry, type RepositoryIndex, resolve, UnsatisfiableError } from '../src/index.ts';
import { alpineLike, ORIGINAL_WORLD } from './alpine-like.ts';

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
    // Both paths are named: the one that needed the name and the one whose constraint excluded it.
    expect(() => resolve(['app', 'pinned'], [main])).toThrow(
      'unsatisfiable: world -> app-2.0-r0 -> cmd:sh: busybox-1.36.1-r5 not busybox<1.36 (required by pinned-1.0-r0)',
    );
  });

  it('honours !conflicts', () => {
    // apk sorts the world by name (apk_solver_solve), so both orders fail the same way.
    for (const world of [
      ['openrc', 'sysvinit'],
      ['sysvinit', 'openrc'],
    ]) {
      expect(() => resolve(world, [main])).toThrow('unsatisfiable: world -> sysvinit: sysvinit-3.0-r0 conflicts with openrc-0.52-r0 (!sysvinit)');
    }
    // A conflict met after the package was selected names the selected one.
    const late: RepositoryIndex = { entries: [pkg('zz-late', '1-r0', { depends: ['!docs'] })] };
    expect(() => resolve(['docs', 'zz-late'], [main, late])).toThrow(
      'unsatisfiable: world -> zz-late-1-r0 -> !docs: docs-1-r0 is already selected (required by world)',
    );
    expect(() => resolve(['busybox', '!busybox'], [main])).toThrow(UnsatisfiableError);
    expect(names(resolve(['openrc'], [main]))).toEqual(['openrc-0.52-r0']);
  });

  it('does not pick a provider of a pure virtual name (provides without version) on its own', () => {
    // solver.c is_provider_auto_selectable: no version, no provider_priority, not named -> never
    // chosen, even as the only provider (apk 2.14.10: "please select one of the 'provided by' packages").
    expect(() => resolve(['virt-user'], [main])).toThrow(
      'unsatisfiable: world -> virt-user-1.0-r0 -> /bin/sh: virtual name provided by busybox-1.36.1-r5, none with a provider_priority: name one of them in the world',
    );
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
    expect(() => resolve(['docs@other'], [edge])).toThrow(
      'unsatisfiable: world -> docs@other: docs-9-r0 only in the repository tagged @edge (ask for docs@edge)',
    );
  });

  it('refuses invalid world entries with a typed error', () => {
    expect(() => resolve(['busybox>=x.y'], [main])).toThrow(/not a valid version/);
  });
});

// Provider choice as apk-tools 2.14's solver makes it (src/solver.c): select_package skips
// providers is_provider_auto_selectable refuses, then keeps the best by compare_providers: pinning
// (tag_ok, tag_preferred), the version of the requested name, the version of the same package
// name, provider_priority, then the lowest repository.
describe('resolve: apk provider selection', () => {
  const base = [pkg('musl', '1.2.5-r0', { provides: ['so:libc.musl-x86_64.so.1=1'] })];
  const sh = (name: string, version: string, k?: number, extra: Partial<IndexEntry> = {}) =>
    pkg(name, version, { provides: ['/bin/sh', `cmd:sh=${version}`], ...(k ? { providerPriority: k } : {}), ...extra });
  const shells: RepositoryIndex = {
    entries: [
      ...base,
      sh('busybox-binsh', '1.36.1-r15', 100),
      sh('dash-binsh', '0.5.12-r3', 60),
      sh('yash-binsh', '2.55-r0'),
      pkg('script', '1-r0', { depends: ['/bin/sh'] }),
      pkg('needs-cmd-sh', '1-r0', { depends: ['cmd:sh'] }),
    ],
  };
  const picked = (world: string[], indexes: RepositoryIndex[], name: string) =>
    resolve(world, indexes)
      .map((r) => r.entry.name)
      .filter((n) => n.endsWith(name));

  it('picks the highest provider_priority among providers of a name without version', () => {
    // compare_providers: no version on either side -> provider_priority decides; yash-binsh (no k:) is not auto-selectable.
    expect(picked(['script'], [shells], '-binsh')).toEqual(['busybox-binsh']);
  });

  it('takes the provider the world names, whatever its priority', () => {
    // The named package has requirers, so it is auto-selectable, and once selected it has locked /bin/sh.
    expect(picked(['script', 'yash-binsh'], [shells], '-binsh')).toEqual(['yash-binsh']);
    expect(picked(['dash-binsh', 'script'], [shells], '-binsh')).toEqual(['dash-binsh']);
  });

  it('refuses a name without version whose providers have no provider_priority', () => {
    const plain: RepositoryIndex = {
      entries: [
        ...base,
        pkg('a-binsh', '1-r0', { provides: ['/bin/sh'] }),
        pkg('b-binsh', '2-r0', { provides: ['/bin/sh'] }),
        pkg('script', '1-r0', { depends: ['/bin/sh'] }),
      ],
    };
    expect(() => resolve(['script'], [plain])).toThrow(
      'unsatisfiable: world -> script-1-r0 -> /bin/sh: virtual name provided by a-binsh-1-r0, b-binsh-2-r0, none with a provider_priority: name one of them in the world',
    );
    expect(picked(['script', 'b-binsh'], [plain], '-binsh')).toEqual(['b-binsh']);
  });

  it('lets several packages share a name that none of them gives a version', () => {
    // assign_name: two providers of the same name without version do not conflict.
    const repo: RepositoryIndex = {
      entries: [
        pkg('a-binsh', '1-r0', { provides: ['/bin/sh'], providerPriority: 1 }),
        pkg('b-binsh', '1-r0', { provides: ['/bin/sh'] }),
        pkg('script', '1-r0', { depends: ['/bin/sh'] }),
      ],
    };
    expect(resolve(['a-binsh', 'b-binsh', 'script'], [repo]).map((r) => r.entry.name)).toEqual(['a-binsh', 'b-binsh', 'script']);
  });

  it('prefers the higher version of a versioned name over provider_priority', () => {
    // "Select latest by requested name" comes before "prefer highest declared provider priority".
    expect(picked(['needs-cmd-sh'], [shells], '-binsh')).toEqual(['yash-binsh']);
  });

  it('refuses two selected packages that give the same name a version', () => {
    // assign_name: "conflict: same name provided" (cmd:sh=... from both).
    expect(() => resolve(['busybox-binsh', 'yash-binsh'], [shells])).toThrow(
      'unsatisfiable: world -> yash-binsh: yash-binsh-2.55-r0 busybox-binsh-1.36.1-r15 already provides cmd:sh',
    );
  });

  it('uses provider_priority when the provided versions are equal', () => {
    const ssh: RepositoryIndex = {
      entries: [
        pkg('openssh-client-krb5', '9.6_p1-r0', { provides: ['openssh-client=9.6_p1-r0'], providerPriority: 10 }),
        pkg('openssh-client-default', '9.6_p1-r0', { provides: ['openssh-client=9.6_p1-r0'], providerPriority: 100 }),
        pkg('openssh', '9.6_p1-r0', { depends: ['openssh-client'] }),
      ],
    };
    expect(picked(['openssh'], [ssh], 'openssh-client-default')).toEqual(['openssh-client-default']);
    expect(picked(['openssh'], [ssh], 'krb5')).toEqual([]);
  });

  it('does not rank a real package above a virtual provider by itself: the version rule cannot compare a missing version', () => {
    // foo-1.0 offers "1.0" for foo, bar offers foo without a version: apk_version_compare gives no
    // order, the package names differ, so provider_priority decides.
    const repo: RepositoryIndex = {
      entries: [pkg('foo', '1.0-r0'), pkg('bar', '1.0-r0', { provides: ['foo'], providerPriority: 10 }), pkg('user', '1-r0', { depends: ['foo'] })],
    };
    expect(picked(['user'], [repo], 'bar')).toEqual(['bar']);
    // Without a priority bar is not auto-selectable, and foo is chosen.
    const plain: RepositoryIndex = { entries: [pkg('foo', '1.0-r0'), pkg('bar', '1.0-r0', { provides: ['foo'] }), pkg('user', '1-r0', { depends: ['foo'] })] };
    expect(picked(['user'], [plain], 'foo')).toEqual(['foo']);
  });

  it('takes the earlier repository when everything else is equal', () => {
    const a = pkg('same', '1-r0');
    const b = pkg('same', '1-r0');
    expect(resolve(['same'], [{ entries: [a] }, { entries: [b] }])[0]!.entry).toBe(a);
    expect(resolve(['same'], [{ entries: [b] }, { entries: [a] }])[0]!.entry).toBe(b);
  });

  it('avoids a provider whose own dependencies cannot be met when another can be', () => {
    // compare_providers: "prefer without errors" comes first.
    const repo: RepositoryIndex = {
      entries: [
        pkg('good-impl', '1-r0', { provides: ['impl=1'] }),
        pkg('broken-impl', '2-r0', { provides: ['impl=2'], depends: ['so:libgone.so.1'] }),
        pkg('user', '1-r0', { depends: ['impl'] }),
      ],
    };
    expect(picked(['user'], [repo], '-impl')).toEqual(['good-impl']);
  });

  it('keeps world pins (name=version, name<version) over newer versions', () => {
    const repo: RepositoryIndex = { entries: [pkg('tool', '1.0-r0'), pkg('tool', '2.0-r0'), pkg('uses-tool', '1-r0', { depends: ['tool'] })] };
    expect(resolve(['uses-tool', 'tool=1.0-r0'], [repo]).find((r) => r.entry.name === 'tool')!.entry.version).toBe('1.0-r0');
    expect(resolve(['uses-tool', 'tool<2'], [repo]).find((r) => r.entry.name === 'tool')!.entry.version).toBe('1.0-r0');
    expect(resolve(['uses-tool'], [repo]).find((r) => r.entry.name === 'tool')!.entry.version).toBe('2.0-r0');
  });
});

describe('resolve: Alpine-like main + community', () => {
  const repos = alpineLike({ size: 4000, seed: 7 });
  const indexes: RepositoryIndex[] = [
    { entries: repos.main, source: 'main' },
    { entries: repos.community, source: 'community' },
    { entries: repos.edge, tag: 'edge', source: 'edge' },
    { entries: repos.own, source: 'own' },
  ];
  const all = [...repos.main, ...repos.community, ...repos.edge, ...repos.own];

  it('generates the same repositories for the same seed, and about the size asked for', () => {
    const again = alpineLike({ size: 4000, seed: 7 });
    expect(again.main.map((e) => e.identity)).toEqual(repos.main.map((e) => e.identity));
    expect(alpineLike({ size: 4000, seed: 8 }).main.map((e) => e.name)).not.toEqual(repos.main.map((e) => e.name));
    expect(repos.main.length + repos.community.length).toBe(4000);
    // The shapes the tests rely on are there: priorities, install_if, so:/cmd:/pc: provides.
    expect(all.filter((e) => e.providerPriority).length).toBeGreaterThan(10);
    expect(all.filter((e) => e.installIf.length > 0).length).toBeGreaterThan(100);
    for (const prefix of ['so:', 'cmd:', 'pc:']) expect(all.some((e) => e.provides.some((p) => p.startsWith(prefix)))).toBe(true);
  });

  it('uses the original psyopsOS world, the image default for Alpine repositories', () => {
    const schema = JSON.parse(readFileSync(new URL('../../cli/src/psyops.config.schema.json', import.meta.url), 'utf8'));
    expect(schema.properties.image.properties.world.default).toEqual(ORIGINAL_WORLD);
  });

  it('resolves the original world without naming providers, choosing as apk does', () => {
    const result = resolve(ORIGINAL_WORLD, indexes);
    const chosen = new Map(result.map((r) => [r.entry.name, r]));
    // /bin/sh: busybox-binsh (k:100) over dash-binsh (k:60) and yash-binsh (no k:, not auto-selectable).
    expect([...chosen.keys()].filter((n) => n.endsWith('-binsh'))).toEqual(['busybox-binsh']);
    // ifupdown-any, a name without version: ifupdown-ng (k:200) over busybox-ifupdown (k:100).
    expect(chosen.has('ifupdown-ng')).toBe(true);
    expect(chosen.has('busybox-ifupdown')).toBe(false);
    // openssh-client=9.6_p1-r0 from both: equal versions, so k:100 beats k:10.
    expect(chosen.has('openssh-client-default')).toBe(true);
    expect(chosen.has('openssh-client-krb5')).toBe(false);
    // so:libudev.so.1=1.7.0 (eudev-libs) beats =1.0.3 (libudev-zero, k:50): the version comes first.
    expect(chosen.has('eudev-libs')).toBe(true);
    expect(chosen.has('libudev-zero')).toBe(false);
    // install_if: the -openrc subpackages of installed services come in (openrc is installed),
    // -doc and -bash-completion do not (docs, bash-completion are not), nor the pyc chain.
    for (const name of ['iptables-openrc', 'k3s-openrc', 'openssh-server-common-openrc']) expect(chosen.get(name)?.requiredBy).toEqual(['install_if']);
    for (const name of ['bash-doc', 'git-bash-completion', 'k3s-bash-completion', 'python3-pyc', 'python3-pycache-pyc0']) expect(chosen.has(name)).toBe(false);
    // Tagged repositories are not used for untagged names, even with newer versions.
    expect(result.every((r) => r.repository !== 2)).toBe(true);
    expect(chosen.get('busybox')!.entry.version).toBe('1.36.1-r15');
    expect(chosen.get('k3s')!.repository).toBe(1);
    // What psyopsOS itself needs: Alpine's nodejs (main) and nebula (community), ours from the workspace's repository.
    expect(['nodejs', 'nebula', 'psyops-nodeboot', 'psyopsOS-base'].map((name) => chosen.get(name)?.repository)).toEqual([0, 1, 3, 3]);
    expect(chosen.get('nebula-openrc')?.requiredBy).toEqual(['install_if']);
    expect(apkInvariants(ORIGINAL_WORLD, result, all)).toEqual([]);
  });

  it('follows a two-level install_if chain', () => {
    const chosen = resolve([...ORIGINAL_WORLD, 'pyc'], indexes).map((r) => r.entry.name);
    expect(chosen).toEqual(expect.arrayContaining(['pyc', 'python3-pyc', 'python3-pycache-pyc0']));
  });

  it('pins name@tag to its repository, and lets its dependencies use it where needed', () => {
    const result = resolve(['k3s@edge', 'openrc'], indexes);
    const chosen = new Map(result.map((r) => [r.entry.name, r]));
    expect(chosen.get('k3s')).toMatchObject({ repository: 2, entry: { version: '1.29.1.1-r0' } });
    // cni-plugins>=1.4.1 exists only in edge: allowed through k3s's pinning.
    expect(chosen.get('cni-plugins')).toMatchObject({ repository: 2, entry: { version: '1.4.1-r0' } });
    // conntrack-tools is newer in edge, but untagged repositories are preferred for dependencies.
    expect(chosen.get('conntrack-tools')!.repository).toBe(0);
    // install_if inherits the pinning of its conditions: edge's k3s-openrc, not main's.
    expect(chosen.get('k3s-openrc')).toMatchObject({ repository: 2, entry: { version: '1.29.1.1-r0' } });
    expect(() => resolve(['k3s=1.29.1.1-r0'], indexes)).toThrow(
      'unsatisfiable: world -> k3s=1.29.1.1-r0: no candidate fits: k3s-1.28.5.1-r0 not k3s=1.29.1.1-r0 (required by world); k3s-1.29.1.1-r0 only in the repository tagged @edge (ask for k3s@edge)',
    );
  });

  it('refuses a world whose packages conflict, naming both', () => {
    expect(() => resolve([...ORIGINAL_WORLD, 'doas-sudo-shim'], indexes)).toThrow(
      'unsatisfiable: world -> sudo: sudo-1.9.15_p5-r0 conflicts with doas-sudo-shim-0.1.1-r1 (!sudo)',
    );
  });

  it('accepts the indexes as imagebuild passes them, and gives the same answer twice', () => {
    const first = resolve(ORIGINAL_WORLD, indexes).map((r) => r.entry.identity);
    expect(resolve(ORIGINAL_WORLD, indexes).map((r) => r.entry.identity)).toEqual(first);
    expect(resolve([...ORIGINAL_WORLD].reverse(), indexes).map((r) => r.entry.identity)).toEqual(first);
  });
});

/**
 * apk's invariants for an install set, checked without the resolver: every dependency is met by a
 * selected package (apk_dep_is_provided), no `!conflict` is, one package per name, no versioned
 * name from two packages, every install_if whose conditions hold is in, and nothing is in that
 * neither the world nor a dependency nor an install_if asks for. Returns the violations.
 */
function apkInvariants(world: readonly string[], result: ReturnType<typeof resolve>, index: IndexEntry[]): string[] {
  const problems: string[] = [];
  const selected = result.map((r) => r.entry);
  const provided = new Map<string, { entry: IndexEntry; version: string | undefined }[]>();
  for (const entry of selected) {
    for (const p of [{ name: entry.name, version: entry.version as string | undefined }, ...entry.provides.map(parseProvided)]) {
      provided.set(p.name, [...(provided.get(p.name) ?? []), { entry, version: p.version }]);
    }
  }
  const meets = (token: string): boolean => {
    const dep = parseDependency(token);
    const has = (provided.get(dep.name) ?? []).some((p) => versionSatisfies(dep, p.version, p.entry.identity));
    return dep.conflict ? !has : has;
  };
  for (const token of world) if (!meets(token)) problems.push(`world ${token} unmet`);
  for (const entry of selected) for (const token of entry.depends) if (!meets(token)) problems.push(`${entry.name}: ${token} unmet`);
  for (const [name, list] of provided) {
    if (list.filter((p) => p.entry.name === name).length > 1) problems.push(`two packages named ${name}`);
    if (list.length > 1 && list.some((p) => p.version !== undefined))
      problems.push(`${name} provided with a version by ${list.map((p) => p.entry.name).join(', ')}`);
  }
  const names = new Set(selected.map((e) => e.name));
  for (const entry of index) {
    if (entry.installIf.length > 0 && !names.has(entry.name) && entry.installIf.every(meets) && index.every((e) => e.name !== entry.name || e === entry)) {
      problems.push(`install_if of ${entry.name} holds but it is missing`);
    }
  }
  // Reachability: from the world through dependencies, plus install_if packages whose conditions hold.
  const reached = new Set<IndexEntry>();
  const visit = (token: string) => {
    const dep = parseDependency(token);
    if (dep.conflict) return;
    for (const p of provided.get(dep.name) ?? []) {
      if (reached.has(p.entry)) continue;
      reached.add(p.entry);
      for (const d of p.entry.depends) visit(d);
    }
  };
  for (const token of world) visit(token);
  for (const entry of selected) if (entry.installIf.length > 0 && entry.installIf.every(meets)) visit(`${entry.name}=${entry.version}`);
  for (const entry of selected) if (!reached.has(entry)) problems.push(`${entry.name} is not asked for`);
  return problems;
}
