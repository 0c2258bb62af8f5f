/** The Alpine path: repository tags reach the resolver, and the image records its Alpine release. */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPackage, indexRepository, type IndexEntry, type PackageSpec, type ResolvedPackage } from '@psyops/apkpkg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApkovl } from '../src/apkovl.js';
import { alpineRelease, resolveSets } from '../src/build.js';
import { ImageConfigError } from '../src/errors.js';
import { fetchPackages } from '../src/packages.js';
import { loadRepositories } from '../src/repositories.js';
import { bootPackagesStage, nodeRepositories } from '../src/rootfs.js';
import { buildKeyedRepository, KEYED_ARCH, testKey, writeKeysDir } from './fixtures/keyed-repository.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'psyops-alpine-path-test-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the initramfs's busybox on the Alpine path", () => {
  /** A signed repository `<dir>/x86_64/` with these packages (files from the host: a static busybox, a dynamic program). */
  async function alpineShaped(name: string, specs: Omit<PackageSpec, 'arch' | 'url' | 'license' | 'description'>[]) {
    const key = await testKey(name);
    const repo = join(dir, name);
    mkdirSync(join(repo, KEYED_ARCH), { recursive: true });
    const signing = { keyName: key.keyName, privateKey: key.privateKeyPem };
    for (const spec of specs) {
      const built = await buildPackage(
        { arch: KEYED_ARCH, url: 'https://example.invalid', license: 'GPL-2.0-only', description: spec.name, ...spec },
        { sourceDateEpoch: 1_700_000_000, key: signing },
      );
      writeFileSync(join(repo, KEYED_ARCH, built.fileName), built.bytes);
    }
    await indexRepository(repo, { sourceDateEpoch: 1_700_000_000, key: signing });
    return { url: repo, keysDir: await writeKeysDir(join(dir, `${name}-keys`), [key]) };
  }
  // As on Alpine: busybox is dynamically linked (here the host's /usr/bin/env stands in), busybox-static
  // ships bin/busybox.static, and the kernel pulls busybox in through mkinitfs.
  const DYNAMIC = '/usr/bin/env';
  const alpineMain = () => [
    { name: 'busybox', version: '1.37.0-r19', files: [{ path: 'bin/busybox', source: DYNAMIC, mode: '0755' }] },
    { name: 'busybox-static', version: '1.37.0-r19', files: [{ path: 'bin/busybox.static', source: '/bin/busybox', mode: '0755' }] },
    { name: 'mkinitfs', version: '3.11.1-r0', depends: ['busybox'], files: [{ path: 'sbin/mkinitfs', content: '#!/bin/sh\n', mode: '0755' }] },
    {
      name: 'linux-lts',
      version: '6.12.40-r0',
      depends: ['mkinitfs'],
      files: [
        { path: 'boot/vmlinuz-lts', content: 'no kernel\n' },
        { path: 'lib/modules/6.12.40-0-lts/modules.dep', content: '' },
      ],
    },
  ];

  it("takes busybox-static's bin/busybox.static, though a higher dynamic busybox is in another repository", async () => {
    const main = await alpineShaped('main', alpineMain());
    const newer = await alpineShaped('newer', [{ name: 'busybox', version: '1.37.0-r30', files: [{ path: 'bin/busybox', source: DYNAMIC, mode: '0755' }] }]);
    const cacheDir = join(dir, 'busybox-cache');
    const repositories = await loadRepositories([newer, main], { arch: KEYED_ARCH, cacheDir, offline: false });
    const image = { world: ['busybox'], kernel: 'lts', initramfsPackages: ['busybox-static'] };
    const sets = resolveSets(image, repositories);
    expect(sets.boot.map((item) => `${item.entry.name}-${item.entry.version}`).sort()).toEqual([
      'busybox-1.37.0-r30',
      'busybox-static-1.37.0-r19',
      'linux-lts-6.12.40-r0',
      'mkinitfs-3.11.1-r0',
    ]);
    const packages = await fetchPackages(sets.boot, repositories, { cacheDir });
    const boot = await bootPackagesStage({ dir: cacheDir, rebuild: false }, { packages, kernelFlavor: 'lts', mtime: 1_700_000_000 });
    expect(boot.value.busybox).toMatch(/\/bin\/busybox\.static$/);
    expect(boot.value.kernel.kernelVersion).toBe('6.12.40-0-lts');
    // Alpine's busybox alone is refused for the initramfs, saying what to add.
    const dynamicOnly = resolveSets({ ...image, initramfsPackages: ['busybox'] }, repositories);
    const fetched = await fetchPackages(dynamicOnly.boot, repositories, { cacheDir });
    await expect(bootPackagesStage({ dir: cacheDir, rebuild: false }, { packages: fetched, kernelFlavor: 'lts', mtime: 1_700_000_000 })).rejects.toThrow(
      /needs a static busybox.*dynamically linked.*add busybox-static to initramfsPackages/,
    );
  });

  it('without busybox-static in any repository, says so in the words of the config', async () => {
    const onlyDynamic = await alpineShaped(
      'only-dynamic',
      alpineMain().filter((spec) => spec.name !== 'busybox-static'),
    );
    const repositories = await loadRepositories([onlyDynamic], { arch: KEYED_ARCH, cacheDir: join(dir, 'only-dynamic-cache'), offline: false });
    const image = { world: ['busybox'], kernel: 'lts', initramfsPackages: ['busybox-static'] };
    expect(() => resolveSets(image, repositories)).toThrow(ImageConfigError);
    expect(() => resolveSets(image, repositories)).toThrow(
      /^image\.initramfsPackages: no repository has busybox-static \(repositories: .*only-dynamic\); the initramfs needs a static busybox: Alpine's busybox-static/,
    );
    expect(() => resolveSets({ ...image, kernel: 'virt' }, repositories)).toThrow(/^image\.kernel "virt": no repository has the kernel package linux-virt/);
  });
});

describe('repository tags (name@tag)', () => {
  it('a tagged repository serves name@tag, and only that', async () => {
    const key = await testKey('tags');
    const keysDir = await writeKeysDir(join(dir, 'keys'), [key]);
    const main = await buildKeyedRepository(join(dir, 'main'), key, 'alpha');
    const kernel = await buildKeyedRepository(join(dir, 'kernel'), key, 'linux-x');
    const testing = await buildKeyedRepository(join(dir, 'testing'), key, 'beta');
    const repositories = await loadRepositories(
      [
        { url: main, keysDir },
        { url: kernel, keysDir },
        { url: testing, keysDir, tag: 'testing', alpine: 'edge/testing' },
      ],
      { arch: KEYED_ARCH, cacheDir: join(dir, 'cache'), offline: false },
    );
    expect(repositories.map((repository) => [repository.tag, repository.alpine])).toEqual([
      [undefined, undefined],
      [undefined, undefined],
      ['testing', 'edge/testing'],
    ]);
    const image = { world: ['alpha', 'beta@testing'], kernel: 'x', initramfsPackages: [] };
    const sets = resolveSets(image, repositories);
    expect(sets.root.map((item) => [item.entry.name, repositories[item.repository]!.url])).toEqual([
      ['alpha', main],
      ['beta', testing],
    ]);
    expect(sets.boot.map((item) => item.entry.name)).toEqual(['linux-x']);
    // Untagged, the tagged repository's package is not a candidate (as apk does).
    expect(() => resolveSets({ ...image, world: ['alpha', 'beta'] }, repositories)).toThrow(/beta/);
  });

  it("the image's etc/apk/repositories keeps a tagged repository as apk writes it, @tag URL", () => {
    expect(
      nodeRepositories(
        ['https://mirror.example/alpine/v3.22/main', '@testing https://mirror.example/alpine/edge/testing', '@local /home/builder/repo'],
        'https://site.example',
      ),
    ).toEqual(['https://mirror.example/alpine/v3.22/main', '@testing https://mirror.example/alpine/edge/testing', 'https://site.example/apk/psyopsOS']);
  });
});

describe('the Alpine release', () => {
  const installed = (name: string, version: string) =>
    ({ entry: { name, version } as IndexEntry, repository: 0, requiredBy: [] }) as unknown as ResolvedPackage;

  it("is the root's alpine-release without -rN (what /etc/alpine-release says), else the Alpine repositories' branch, else none", () => {
    const repos = [{}, { alpine: 'v3.22/main' }, { alpine: 'edge/testing' }];
    expect(alpineRelease([installed('busybox', '1.37.0-r19'), installed('alpine-release', '3.22.2-r0')], repos)).toBe('3.22.2');
    expect(alpineRelease([installed('alpine-base', '3.21.4-r1')], [])).toBe('3.21.4');
    expect(alpineRelease([installed('busybox', '1.37.0-r19')], repos)).toBe('3.22');
    expect(alpineRelease([], [{}, { alpine: 'edge/main' }, { alpine: 'v3.22/main' }])).toBe('edge');
    expect(alpineRelease([], [{}, { alpine: 'latest-stable/main' }])).toBe('none');
    expect(alpineRelease([], [{}])).toBe('none');
  });

  it('is in /etc/psyopsOS/iso.json', async () => {
    const out = join(dir, 'ovl.apkovl.tar.gz');
    await buildApkovl({
      hostname: 'psyopsOS-bootstrap',
      world: ['alpine-base'],
      release: '251125',
      alpine: '3.22.2',
      arch: 'x86_64',
      buildInfo: { date: '2025-11-25T00:00:00.000Z', gitRevision: null, gitDirty: null },
      postbootHook: '#!/bin/sh\n',
      out,
      mtime: 1_764_028_800,
    });
    const target = join(dir, 'ovl');
    mkdirSync(target);
    execFileSync('tar', ['-C', target, '-xzf', out]);
    expect(JSON.parse(readFileSync(join(target, 'etc/psyopsOS/iso.json'), 'utf8'))).toEqual({
      generated: { iso8601: '2025-11-25T00:00:00.000Z', revision: null, dirty: null },
      release: '251125',
      alpine: '3.22.2',
      arch: 'x86_64',
    });
  });
});
