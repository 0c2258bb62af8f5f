import { copyFileSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildPackage, checkAgainstIndex, indexRepository, keyRing, readIndex, readPackage, readSigningKey } from '../src/index.ts';
import { DEP, EPOCH, FIXTURES, HELLO, INDEX, members, tempDir, VECTOR_KEY, VECTOR_KEY_NAME } from './helpers.ts';

const keys = keyRing({ [VECTOR_KEY_NAME]: readFileSync(join(FIXTURES, VECTOR_KEY_NAME)) });

function vectorRepo(): string {
  const repo = tempDir('repo');
  mkdirSync(join(repo, 'x86_64'));
  copyFileSync(join(FIXTURES, 'psyops-hello-1.0.0-r0.apk'), join(repo, 'x86_64/psyops-hello-1.0.0-r0.apk'));
  copyFileSync(join(FIXTURES, 'psyops-dep-2.1_rc1-r3.apk'), join(repo, 'x86_64/psyops-dep-2.1_rc1-r3.apk'));
  return repo;
}

describe('indexRepository', () => {
  it('writes the same index tar as `apk index --rewrite-arch x86_64` did for the vectors, signed', async () => {
    const repo = vectorRepo();
    const key = await readSigningKey(VECTOR_KEY);
    const [result] = await indexRepository(repo, { sourceDateEpoch: EPOCH, key, description: 'psyops test repo' });
    expect(result).toMatchObject({ arch: 'x86_64', packages: 2, read: 2 });
    const ours = readFileSync(join(repo, 'x86_64/APKINDEX.tar.gz'));
    // Byte for byte: DESCRIPTION + APKINDEX entries, apk's GNU-style headers, two end blocks.
    expect(members(ours)[1]!.data.equals(members(INDEX)[1]!.data)).toBe(true);
    // Signature stream: same structure (header) as abuild-sign's.
    expect(members(ours)[0]!.data.subarray(0, 512).equals(members(INDEX)[0]!.data.subarray(0, 512))).toBe(true);
    const index = readIndex(ours, { keys });
    expect(index.trustedBy).toBe(VECTOR_KEY_NAME);
    // The noarch packages are indexed under the directory's arch, or apk could not fetch them.
    expect(index.entries.map((e) => e.arch)).toEqual(['x86_64', 'x86_64']);
    checkAgainstIndex(HELLO, index.entries[1]!, { keys });
    checkAgainstIndex(DEP, index.entries[0]!, { keys });
  });

  it('rereads only packages that changed on a repeat run', async () => {
    const repo = vectorRepo();
    const key = await readSigningKey(VECTOR_KEY);
    const past = new Date(Date.now() - 60_000);
    for (const f of ['psyops-hello-1.0.0-r0.apk', 'psyops-dep-2.1_rc1-r3.apk']) utimesSync(join(repo, 'x86_64', f), past, past);
    await indexRepository(repo, { sourceDateEpoch: EPOCH, key });
    const first = readFileSync(join(repo, 'x86_64/APKINDEX.tar.gz'));
    const read: string[] = [];
    const [warm] = await indexRepository(repo, { sourceDateEpoch: EPOCH, key, onRead: (f) => read.push(f) });
    expect(warm!.read).toBe(0);
    expect(read).toEqual([]);
    expect(readFileSync(join(repo, 'x86_64/APKINDEX.tar.gz')).equals(first)).toBe(true);

    // Rebuild psyops-dep with another description: only it is read again, and the index follows.
    const rebuilt = await buildPackage(
      {
        name: 'psyops-dep',
        version: '2.1_rc1-r3',
        arch: 'noarch',
        description: 'Rebuilt',
        url: 'https://example.invalid/psyops',
        license: 'MIT',
        files: [{ path: 'usr/bin/psyops-dep', mode: '0755', content: '#!/bin/sh\necho dep\n' }],
      },
      { sourceDateEpoch: EPOCH, key },
    );
    writeFileSync(join(repo, 'x86_64/psyops-dep-2.1_rc1-r3.apk'), rebuilt.bytes);
    const future = new Date(Date.now() + 60_000);
    utimesSync(join(repo, 'x86_64/psyops-dep-2.1_rc1-r3.apk'), future, future);
    const [again] = await indexRepository(repo, { sourceDateEpoch: EPOCH, key, onRead: (f) => read.push(f) });
    expect(again!.read).toBe(1);
    expect(read).toEqual([join(repo, 'x86_64/psyops-dep-2.1_rc1-r3.apk')]);
    const index = readIndex(readFileSync(join(repo, 'x86_64/APKINDEX.tar.gz')), { keys });
    expect(index.entries.find((e) => e.name === 'psyops-dep')).toMatchObject({ description: 'Rebuilt', identity: rebuilt.identity });
  });

  it('refuses a package file named differently from <name>-<version>.apk, leaving no index behind', async () => {
    const repo = tempDir('badname');
    mkdirSync(join(repo, 'x86_64'));
    copyFileSync(join(FIXTURES, 'psyops-hello-1.0.0-r0.apk'), join(repo, 'x86_64/hello.apk'));
    await expect(indexRepository(repo, { sourceDateEpoch: EPOCH })).rejects.toThrow(/apk fetches packages by <name>-<version>.apk/);
    expect(() => readFileSync(join(repo, 'x86_64/APKINDEX.tar.gz'))).toThrow();
  });

  it('refuses a corrupted package in the repository', async () => {
    const repo = tempDir('corrupt');
    mkdirSync(join(repo, 'x86_64'));
    const broken = Buffer.from(HELLO);
    broken[1000] = broken[1000]! ^ 0xff;
    writeFileSync(join(repo, 'x86_64/psyops-hello-1.0.0-r0.apk'), broken);
    await expect(indexRepository(repo, { sourceDateEpoch: EPOCH })).rejects.toThrow(/psyops-hello-1.0.0-r0.apk/);
  });

  it('writes an unsigned index without a key', async () => {
    const repo = vectorRepo();
    await indexRepository(repo, { sourceDateEpoch: EPOCH });
    const bytes = readFileSync(join(repo, 'x86_64/APKINDEX.tar.gz'));
    expect(members(bytes)).toHaveLength(1);
    expect(readIndex(bytes, { keys, allowUntrusted: true }).entries).toHaveLength(2);
    expect(() => readIndex(bytes, { keys })).toThrow(/UNTRUSTED/);
    expect(readPackage(HELLO).identity).toBe(readIndex(bytes).entries[1]!.identity);
  });
});
