import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  ApkChecksumError,
  ApkFetchError,
  ApkSignatureError,
  ApkUntrustedError,
  buildPackage,
  createIndex,
  generateApkKey,
  INDEX_FILE,
  resolve,
} from '@psyops/apkpkg';
import { splitGzipMembers } from '@psyops/apkpkg/format';
import { fetchPackages } from '../src/packages.js';
import { cachedIndexPath, loadRepositories, type LoadedRepository } from '../src/repositories.js';
import {
  buildFixtureRepository,
  copyRepository,
  FIXTURE_ARCH,
  FIXTURE_DESCRIPTION,
  FIXTURE_EPOCH,
  FIXTURE_WORLD,
  fixtureSpecs,
  serveDirectory,
  type FixtureRepository,
  type ServedDirectory,
} from './fixtures/repository.js';

/** SHA-256 of a file: vitest's deep equality walks big buffers byte by byte (seconds for 2 MB). */
async function digest(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

let fixture: FixtureRepository;
let served: ServedDirectory;
let scratch: string;

beforeAll(async () => {
  fixture = await buildFixtureRepository();
  served = await serveDirectory(fixture.dir);
  scratch = await mkdtemp(join(tmpdir(), 'imagebuild-repositories-'));
});

afterAll(async () => {
  await served?.close();
  await fixture?.cleanup();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

let counter = 0;
function freshDir(name: string): string {
  return join(scratch, `${name}-${++counter}`);
}

const arch = FIXTURE_ARCH;
const names = (repository: LoadedRepository): string[] => repository.entries.map((e) => e.name).sort();
const rootSet = (repositories: LoadedRepository[]) =>
  resolve(
    FIXTURE_WORLD,
    repositories.map((r) => ({ entries: r.entries, source: r.url })),
  );

async function filesIn(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort();
}

describe('loadRepositories', () => {
  test('a local directory: verified entries, description, and a cached copy of the index', async () => {
    const cacheDir = freshDir('cache');
    const [repository] = await loadRepositories([{ url: `${fixture.dir}/`, keysDir: fixture.keysDir }], { arch, cacheDir });
    expect(repository!.url).toBe(fixture.dir);
    expect(names(repository!)).toEqual(['baselayout', 'busybox', 'hello', 'linux-test', 'suidtool']);
    expect(repository!.description).toBe(FIXTURE_DESCRIPTION);
    // noarch packages are indexed under the repository's arch (apk fetches from <A:>/).
    expect(repository!.entries.find((e) => e.name === 'hello')!.arch).toBe(arch);
    const original = await readFile(join(fixture.dir, arch, INDEX_FILE));
    expect(repository!.indexSha256).toBe(createHash('sha256').update(original).digest('hex'));
    const cached = cachedIndexPath(cacheDir, fixture.dir, arch);
    expect(cached).toBe(join(cacheDir, 'indexes', `${createHash('sha256').update(fixture.dir).digest('hex')}-${arch}.${INDEX_FILE}`));
    expect(await readFile(cached)).toEqual(original);
  });

  test('the same repository over HTTP gives the same entries', async () => {
    const [local] = await loadRepositories([{ url: fixture.dir, keysDir: fixture.keysDir }], { arch, cacheDir: freshDir('cache') });
    const [remote] = await loadRepositories([{ url: served.url, keysDir: fixture.keysDir }], { arch, cacheDir: freshDir('cache') });
    expect(remote!.entries).toEqual(local!.entries);
    expect(remote!.indexSha256).toBe(local!.indexSha256);
    expect(served.requests).toContain(`/${arch}/${INDEX_FILE}`);
  });

  test('an index signed by a key that is not trusted is refused, naming the repository', async () => {
    const otherKeys = freshDir('keys');
    const other = await generateApkKey({ name: 'other', bits: 2048, now: FIXTURE_EPOCH });
    await writeFile(join(await mkdirp(otherKeys), other.keyName), other.publicKeyPem);
    const cacheDir = freshDir('cache');
    const loading = loadRepositories([{ url: served.url, keysDir: otherKeys }], { arch, cacheDir });
    await expect(loading).rejects.toThrow(ApkUntrustedError);
    await expect(loading).rejects.toThrow(served.url);
    expect(await filesIn(join(cacheDir, 'indexes'))).toEqual([]);
  });

  test('an index changed after signing is refused (bad signature by a trusted key)', async () => {
    const dir = freshDir('repo');
    await copyRepository(fixture.dir, dir);
    const indexPath = join(dir, arch, INDEX_FILE);
    const [signature] = splitGzipMembers(await readFile(indexPath));
    const [loaded] = await loadRepositories([{ url: fixture.dir, keysDir: fixture.keysDir }], { arch, cacheDir: freshDir('cache') });
    const forged = createIndex(loaded!.entries.slice(1), { sourceDateEpoch: FIXTURE_EPOCH, description: FIXTURE_DESCRIPTION });
    await writeFile(indexPath, Buffer.concat([signature!.compressed, forged]));
    await expect(loadRepositories([{ url: dir, keysDir: fixture.keysDir }], { arch, cacheDir: freshDir('cache') })).rejects.toThrow(ApkSignatureError);
  });

  test('unreachable repositories: HTTP status, missing directory, closed port', async () => {
    const cacheDir = freshDir('cache');
    await expect(loadRepositories([{ url: `${served.url}/nothing-here`, keysDir: fixture.keysDir }], { arch, cacheDir })).rejects.toThrow(
      `${served.url}/nothing-here/${arch}/${INDEX_FILE}: HTTP 404`,
    );
    const missing = freshDir('missing');
    await expect(loadRepositories([{ url: missing, keysDir: fixture.keysDir }], { arch, cacheDir })).rejects.toThrow(missing);
    const closed = await serveDirectory(fixture.dir);
    await closed.close();
    const loading = loadRepositories([{ url: closed.url, keysDir: fixture.keysDir }], { arch, cacheDir, timeoutMs: 10_000 });
    await expect(loading).rejects.toThrow(ApkFetchError);
    await expect(loading).rejects.toThrow(closed.url);
  });

  test('offline: the cached index is used (and verified again); without one the error names the repository', async () => {
    const cacheDir = freshDir('cache');
    const server = await serveDirectory(fixture.dir);
    const [online] = await loadRepositories([{ url: server.url, keysDir: fixture.keysDir }], { arch, cacheDir });
    await server.close();
    const [offline] = await loadRepositories([{ url: server.url, keysDir: fixture.keysDir }], { arch, cacheDir, offline: true });
    expect(online!.indexFrom).toBe('repository');
    expect(offline!.indexFrom).toBe('cache');
    expect({ ...offline, indexFrom: online!.indexFrom }).toEqual(online);

    const otherKeys = await mkdirp(freshDir('keys'));
    const other = await generateApkKey({ name: 'other', bits: 2048, now: FIXTURE_EPOCH });
    await writeFile(join(otherKeys, other.keyName), other.publicKeyPem);
    await expect(loadRepositories([{ url: server.url, keysDir: otherKeys }], { arch, cacheDir, offline: true })).rejects.toThrow(ApkUntrustedError);

    const empty = freshDir('cache');
    const loading = loadRepositories([{ url: served.url, keysDir: fixture.keysDir }], { arch, cacheDir: empty, offline: true });
    await expect(loading).rejects.toThrow(ApkFetchError);
    await expect(loading).rejects.toThrow(`repository ${served.url}: offline`);
  });

  test('aborting while a download hangs ends the load at once', async () => {
    const controller = new AbortController();
    const hanging = createServer(() => controller.abort(new Error('cancelled by the user'))); // never answers
    await new Promise<void>((done) => hanging.listen(0, '127.0.0.1', done));
    try {
      const url = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}`;
      const loading = loadRepositories([{ url, keysDir: fixture.keysDir }], {
        arch,
        cacheDir: freshDir('cache'),
        signal: controller.signal,
        timeoutMs: 170_000,
      });
      await expect(loading).rejects.toThrow('cancelled by the user');
    } finally {
      hanging.closeAllConnections();
      hanging.close();
    }
  });

  test('an aborted signal stops loading', async () => {
    const controller = new AbortController();
    controller.abort(new Error('stop now'));
    await expect(
      loadRepositories([{ url: served.url, keysDir: fixture.keysDir }], { arch, cacheDir: freshDir('cache'), signal: controller.signal }),
    ).rejects.toThrow('stop now');
  });
});

async function mkdirp(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  return dir;
}

describe('fetchPackages', () => {
  test('downloads over HTTP into the content-addressed cache, in input order; a second run downloads nothing', async () => {
    const cacheDir = freshDir('cache');
    const server = await serveDirectory(fixture.dir);
    const repositories = await loadRepositories([{ url: server.url, keysDir: fixture.keysDir }], { arch, cacheDir });
    const wanted = rootSet(repositories);
    const progress: string[] = [];
    const fetched = await fetchPackages(wanted, repositories, {
      cacheDir,
      concurrency: 2,
      onProgress: (done, total, name) => progress.push(`${done}/${total} ${name}`),
    });
    expect(fetched.map((f) => f.entry.name)).toEqual(['baselayout', 'busybox', 'hello', 'suidtool']);
    expect(progress.map((p) => p.split(' ')[0])).toEqual(['1/4', '2/4', '3/4', '4/4']);
    for (const { entry, path } of fetched) {
      const hex = Buffer.from(entry.identity.slice(2), 'base64').toString('hex');
      expect(path).toBe(join(cacheDir, 'packages', `${hex}.apk`));
      expect(await digest(path)).toBe(await digest(join(fixture.dir, arch, `${entry.name}-${entry.version}.apk`)));
    }
    // noarch `hello` was fetched from the arch directory its A: names.
    expect(server.requests).toContain(`/${arch}/hello-1.0-r0.apk`);
    const before = server.requests.length;
    const again = await fetchPackages(wanted, repositories, { cacheDir });
    expect(again).toEqual(fetched);
    expect(server.requests.length).toBe(before);
    await server.close();

    // Offline, from the cache only.
    const offline = await loadRepositories([{ url: server.url, keysDir: fixture.keysDir }], { arch, cacheDir, offline: true });
    expect(await fetchPackages(rootSet(offline), offline, { cacheDir, offline: true })).toEqual(fetched);
  });

  test('offline without the package in the cache is a clear error', async () => {
    const cacheDir = freshDir('cache');
    const repositories = await loadRepositories([{ url: fixture.dir, keysDir: fixture.keysDir }], { arch, cacheDir });
    const fetching = fetchPackages(rootSet(repositories), repositories, { cacheDir, offline: true });
    await expect(fetching).rejects.toThrow(ApkFetchError);
    await expect(fetching).rejects.toThrow(/baselayout-3\.4\.3-r1\.apk: offline, and not in the package cache/);
  });

  test('a package that does not match its index entry is refused and never cached', async () => {
    const dir = freshDir('repo');
    await copyRepository(fixture.dir, dir);
    const cacheDir = freshDir('cache');
    const repositories = await loadRepositories([{ url: dir, keysDir: fixture.keysDir }], { arch, cacheDir });
    // Same name and version, different content: what a compromised mirror would serve.
    const hello = fixtureSpecs().find((s) => s.name === 'hello')!;
    const evil = await buildPackage(
      { ...hello, files: [{ path: 'usr/bin/hello', content: '#!/bin/sh\nrm -rf /\n', mode: '0755' }] },
      { sourceDateEpoch: FIXTURE_EPOCH },
    );
    await writeFile(join(dir, arch, evil.fileName), evil.bytes);
    const fetching = fetchPackages(rootSet(repositories), repositories, { cacheDir, concurrency: 1 });
    await expect(fetching).rejects.toThrow(ApkChecksumError);
    await expect(fetching).rejects.toThrow(/hello-1\.0-r0\.apk: package checksum .* does not match the index/);
    const cached = await filesIn(join(cacheDir, 'packages'));
    const helloEntry = repositories[0]!.entries.find((e) => e.name === 'hello')!;
    expect(cached).not.toContain(`${Buffer.from(helloEntry.identity.slice(2), 'base64').toString('hex')}.apk`);
    expect(cached.filter((name) => !name.endsWith('.apk'))).toEqual([]); // no temp files left
  });

  test('a package missing from the server: the error names the repository and the HTTP status; nothing cached', async () => {
    const dir = freshDir('repo');
    await copyRepository(fixture.dir, dir);
    const server = await serveDirectory(dir);
    try {
      const cacheDir = freshDir('cache');
      const repositories = await loadRepositories([{ url: server.url, keysDir: fixture.keysDir }], { arch, cacheDir });
      await rm(join(dir, arch, 'suidtool-2.0-r1.apk'));
      const wanted = rootSet(repositories).filter((p) => p.entry.name === 'suidtool');
      const fetching = fetchPackages(wanted, repositories, { cacheDir });
      await expect(fetching).rejects.toThrow(ApkFetchError);
      await expect(fetching).rejects.toThrow(`repository ${server.url}: cannot fetch ${server.url}/${arch}/suidtool-2.0-r1.apk: HTTP 404`);
      expect(await filesIn(join(cacheDir, 'packages'))).toEqual([]);
    } finally {
      await server.close();
    }
  });

  test('a cached file of the wrong size is fetched again', async () => {
    const cacheDir = freshDir('cache');
    const repositories = await loadRepositories([{ url: fixture.dir, keysDir: fixture.keysDir }], { arch, cacheDir });
    const wanted = rootSet(repositories).filter((p) => p.entry.name === 'hello');
    const [first] = await fetchPackages(wanted, repositories, { cacheDir });
    await writeFile(first!.path, 'truncated');
    const [second] = await fetchPackages(wanted, repositories, { cacheDir });
    expect((await stat(second!.path)).size).toBe(first!.entry.size);
  });
});
