import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ApkChecksumError, ApkSignatureError, ApkUntrustedError, INDEX_FILE, loadKeysDir, resolve } from '@psyops/apkpkg';
import { fetchPackages } from '../src/packages.js';
import { planIso } from '../src/plan.js';
import { ALPINE_KEY_ARCHES, alpineKeysDir, cachedIndexPath, loadRepositories } from '../src/repositories.js';
import { ALPINE_KEY_NAME, buildKeyedRepository, KEYED_ARCH, type TestKey, testKey, writeKeysDir } from './fixtures/keyed-repository.js';
import { buildFixtureRepository, copyRepository, FIXTURE_ARCH, FIXTURE_WORLD, type FixtureRepository, serveDirectory } from './fixtures/repository.js';

/**
 * sha256 of Alpine's published release keys (as the alpine-keys package installs them), taken from
 * the reference copy beside the project (../shared/alpine-keys), which a clean clone may not have:
 * when it is there, the shipped files are compared with it byte for byte too.
 */
const PUBLISHED_KEYS: Record<string, string> = {
  'aarch64/alpine-devel@lists.alpinelinux.org-58199dcc.rsa.pub': '73867d92083f2f8ab899a26ccda7ef63dfaa0032a938620eda605558958a8041',
  'aarch64/alpine-devel@lists.alpinelinux.org-616ae350.rsa.pub': 'd11f6b21c61b4274e182eb888883a8ba8acdbf820dcc7a6d82a7d9fc2fd2836d',
  'x86_64/alpine-devel@lists.alpinelinux.org-4a6a0840.rsa.pub': '9c102bcc376af1498d549b77bdbfa815ae86faa1d2d82f040e616b18ef2df2d4',
  'x86_64/alpine-devel@lists.alpinelinux.org-5261cecb.rsa.pub': '12f899e55a7691225603d6fb3324940fc51cd7f133e7ead788663c2b7eecb00c',
  'x86_64/alpine-devel@lists.alpinelinux.org-6165ee59.rsa.pub': '207e4696d3c05f7cb05966aee557307151f1f00217af4143c1bcaf33b8df733f',
};
const REFERENCE_KEYS = join(import.meta.dirname, '..', '..', '..', '..', 'shared', 'alpine-keys');
const SHIPPED_KEYS = join(import.meta.dirname, '..', 'alpine-keys');

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function digests(dir: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for (const arch of (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name)) {
    for (const name of await readdir(join(dir, arch))) result[`${arch}/${name}`] = sha256(await readFile(join(dir, arch, name)));
  }
  return result;
}

let scratch: string;
let counter = 0;
const fresh = (name: string) => join(scratch, `${name}-${++counter}`);

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'imagebuild-trust-'));
});
afterAll(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe("Alpine's release keys shipped with psyops", () => {
  test('are byte-identical to the published keys, every architecture, nothing more or less', async () => {
    const shipped = await digests(SHIPPED_KEYS);
    expect(shipped).toEqual(PUBLISHED_KEYS);
    if (existsSync(REFERENCE_KEYS)) expect(shipped).toEqual(await digests(REFERENCE_KEYS));
  });

  test('alpineKeysDir gives the shipped folder of each architecture, every file a usable RSA key', async () => {
    for (const arch of ALPINE_KEY_ARCHES) {
      const dir = alpineKeysDir(arch);
      expect(dir).toBe(join(SHIPPED_KEYS, arch));
      const names = (await readdir(dir)).sort();
      expect(names.every((name) => /^alpine-devel@lists\.alpinelinux\.org-[0-9a-f]{8}\.rsa\.pub$/.test(name))).toBe(true);
      expect([...(await loadKeysDir(dir)).keys()].sort()).toEqual(names);
    }
    expect(alpineKeysDir('x86_64')).toContain('x86_64');
    expect(() => alpineKeysDir('riscv64')).toThrow(/no Alpine release keys for riscv64/);
  });
});

describe('keys stay per repository', () => {
  // A stand-in for Alpine: a generated key under the name of one of Alpine's x86_64 keys.
  let alpineLike: TestKey;
  let workspaceKey: TestKey;
  let alpineLikeKeys: string;
  let workspaceKeys: string;
  let alpineRepo: string;
  let ownRepo: string;

  beforeAll(async () => {
    alpineLike = await testKey('impostor', ALPINE_KEY_NAME);
    workspaceKey = await testKey('workspace');
    alpineLikeKeys = await writeKeysDir(fresh('alpine-like-keys'), [alpineLike]);
    workspaceKeys = await writeKeysDir(fresh('workspace-keys'), [workspaceKey]);
    alpineRepo = await buildKeyedRepository(fresh('alpine-repo'), alpineLike, 'alpine-thing');
    ownRepo = await buildKeyedRepository(fresh('own-repo'), workspaceKey, 'own-thing');
  });

  const load = (url: string, keysDir: string, cacheDir = fresh('cache')) => loadRepositories([{ url, keysDir }], { arch: KEYED_ARCH, cacheDir });

  test('each repository is accepted with its own keys, both at once', async () => {
    const loaded = await loadRepositories(
      [
        { url: alpineRepo, keysDir: alpineLikeKeys },
        { url: ownRepo, keysDir: workspaceKeys },
      ],
      { arch: KEYED_ARCH, cacheDir: fresh('cache') },
    );
    expect(loaded.map((r) => r.entries.map((e) => e.name))).toEqual([['alpine-thing'], ['own-thing']]);
  });

  test("an Alpine repository signed with the workspace's key is refused, naming the repository and its keys", async () => {
    const server = await serveDirectory(ownRepo);
    try {
      const cacheDir = fresh('cache');
      const loading = load(server.url, alpineLikeKeys, cacheDir);
      await expect(loading).rejects.toThrow(ApkUntrustedError);
      await expect(loading).rejects.toThrow(`repository ${server.url} (trusting only the keys in ${alpineLikeKeys}): `);
      expect(existsSync(join(cacheDir, 'indexes')) ? await readdir(join(cacheDir, 'indexes')) : []).toEqual([]);
      // And with the shipped Alpine keys.
      await expect(load(server.url, alpineKeysDir('x86_64'))).rejects.toThrow(ApkUntrustedError);
    } finally {
      await server.close();
    }
  });

  test("the workspace's own repository signed with an Alpine(-named) key is refused", async () => {
    const loading = load(alpineRepo, workspaceKeys);
    await expect(loading).rejects.toThrow(ApkUntrustedError);
    await expect(loading).rejects.toThrow(new RegExp(`^repository ${alpineRepo} .*signed by ${ALPINE_KEY_NAME.replaceAll('.', '\\.')}`));
  });

  test("a key that only borrows the name of Alpine's key fails against the real one", async () => {
    const loading = load(alpineRepo, alpineKeysDir('x86_64'));
    await expect(loading).rejects.toThrow(ApkSignatureError);
    await expect(loading).rejects.toThrow(`repository ${alpineRepo}`);
  });

  test('keys are not pooled: one repository trusting both keys does not make the other trust them', async () => {
    const both = await writeKeysDir(fresh('both'), [alpineLike, workspaceKey]);
    const loading = loadRepositories(
      [
        { url: alpineRepo, keysDir: both },
        { url: ownRepo, keysDir: alpineLikeKeys },
      ],
      { arch: KEYED_ARCH, cacheDir: fresh('cache') },
    );
    await expect(loading).rejects.toThrow(`repository ${ownRepo} (trusting only the keys in ${alpineLikeKeys})`);
  });
});

describe('refusals leave nothing half-written, and offline works from the cache', () => {
  let fixture: FixtureRepository;
  beforeAll(async () => {
    fixture = await buildFixtureRepository();
  });
  afterAll(() => fixture?.cleanup());

  const arch = FIXTURE_ARCH;

  test('a tampered index over HTTP is refused naming the repository; the cached good copy is kept, and offline still uses it', async () => {
    const dir = fresh('repo');
    await copyRepository(fixture.dir, dir);
    const server = await serveDirectory(dir);
    try {
      const cacheDir = fresh('cache');
      const [good] = await loadRepositories([{ url: server.url, keysDir: fixture.keysDir }], { arch, cacheDir });
      const cached = cachedIndexPath(cacheDir, server.url, arch);
      const before = await readFile(cached);
      // Flip one byte inside the (gzip'ed, signed) index.
      const index = await readFile(join(dir, arch, INDEX_FILE));
      index[index.length - 20]! ^= 0xff;
      await writeFile(join(dir, arch, INDEX_FILE), index);
      const loading = loadRepositories([{ url: server.url, keysDir: fixture.keysDir }], { arch, cacheDir });
      await expect(loading).rejects.toThrow(`repository ${server.url}`);
      expect((await readFile(cached)).equals(before)).toBe(true);
      expect((await readdir(join(cacheDir, 'indexes'))).sort()).toEqual([cached.split('/').pop()]);
      const [offline] = await loadRepositories([{ url: server.url, keysDir: fixture.keysDir }], { arch, cacheDir, offline: true });
      expect(offline!.indexSha256).toBe(good!.indexSha256);
    } finally {
      await server.close();
    }
  });

  test('a cached index changed on disk is refused offline, naming the repository', async () => {
    const cacheDir = fresh('cache');
    await loadRepositories([{ url: fixture.dir, keysDir: fixture.keysDir }], { arch, cacheDir });
    const cached = cachedIndexPath(cacheDir, fixture.dir, arch);
    const bytes = await readFile(cached);
    bytes[bytes.length - 20]! ^= 0xff;
    await writeFile(cached, bytes);
    await expect(loadRepositories([{ url: fixture.dir, keysDir: fixture.keysDir }], { arch, cacheDir, offline: true })).rejects.toThrow(
      `repository ${fixture.dir}`,
    );
  });

  test('a package failing its checksum is refused naming the repository; nothing of it in the cache', async () => {
    const dir = fresh('repo');
    await copyRepository(fixture.dir, dir);
    const server = await serveDirectory(dir);
    try {
      const cacheDir = fresh('cache');
      const repositories = await loadRepositories([{ url: server.url, keysDir: fixture.keysDir }], { arch, cacheDir });
      const hello = join(dir, arch, 'hello-1.0-r0.apk');
      const bytes = await readFile(hello);
      bytes[bytes.length - 30]! ^= 0xff;
      await writeFile(hello, bytes);
      const wanted = resolve(['hello'], [{ entries: repositories[0]!.entries, source: server.url }]).filter((p) => p.entry.name === 'hello');
      const fetching = fetchPackages(wanted, repositories, { cacheDir });
      await expect(fetching).rejects.toThrow(ApkChecksumError);
      await expect(fetching).rejects.toThrow(`repository ${server.url}: ${server.url}/${arch}/hello-1.0-r0.apk`);
      expect(existsSync(join(cacheDir, 'packages')) ? await readdir(join(cacheDir, 'packages')) : []).toEqual([]);
    } finally {
      await server.close();
    }
  });

  test('planIso resolves name, version, repository and why without fetching a package; offline from the cached indexes', async () => {
    const server = await serveDirectory(fixture.dir);
    const cacheDir = fresh('cache');
    const image = { flavor: 'pc' as const, world: FIXTURE_WORLD, kernel: 'test', initramfsPackages: ['busybox'] };
    try {
      const plan = await planIso({ image, repositories: [{ url: server.url, keysDir: fixture.keysDir }], cacheDir });
      expect(plan.arch).toBe('x86_64');
      expect(plan.repositories).toEqual([
        { url: server.url, keysDir: fixture.keysDir, indexFrom: 'repository', indexSha256: expect.stringMatching(/^[0-9a-f]{64}$/), packages: 5 },
      ]);
      expect(plan.packages.map((p) => [p.name, p.version, p.repository, p.requiredBy, p.cached])).toEqual([
        ['baselayout', '3.4.3-r1', server.url, ['world'], false],
        ['busybox', '1.36.1-r0', server.url, ['hello'], false],
        ['hello', '1.0-r0', server.url, ['world'], false],
        ['suidtool', '2.0-r1', server.url, ['world'], false],
      ]);
      expect(plan.bootPackages.map((p) => [p.name, p.requiredBy]).sort()).toEqual([
        ['busybox', ['image.initramfsPackages']],
        ['linux-test', ['image.kernel']],
      ]);
      expect(server.requests.filter((path) => path.endsWith('.apk'))).toEqual([]);
      expect(existsSync(join(cacheDir, 'packages'))).toBe(false);
    } finally {
      await server.close();
    }
    const offline = await planIso({ image, repositories: [{ url: server.url, keysDir: fixture.keysDir }], cacheDir, offline: true });
    expect(offline.repositories[0]!.indexFrom).toBe('cache');
    expect(offline.packages.map((p) => p.name)).toEqual(['baselayout', 'busybox', 'hello', 'suidtool']);
  });
});
