import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { buildPackage, createIndex, generateApkKey, keyRing, readIndex, resolve } from '@psyops/apkpkg';
import { alpineLike, ORIGINAL_WORLD } from '../../packages/apkpkg/test/alpine-like.ts';
import { CLI, median, timed } from './measure.ts';

const FIXED_EPOCH = { SOURCE_DATE_EPOCH: '1700000000' };

/** A tree of `sizeMiB`: half incompressible files, half text-like ones, in nested directories. */
function writeTree(root: string, sizeMiB: number): void {
  const text = Buffer.from('psyopsOS node configuration line with some repetition 0123456789\n'.repeat(16_384)); // 1 MiB
  let written = 0;
  for (let i = 0; written < sizeMiB * 2 ** 20; i++) {
    const dir = join(root, `usr/share/bench/d${i % 50}`);
    mkdirSync(dir, { recursive: true });
    const size = 256 * 1024 + ((i * 7919) % (3 * 1024 * 1024));
    const data = i % 2 === 0 ? randomBytes(size) : text.subarray(0, Math.min(size, text.length));
    writeFileSync(join(dir, `f${i}`), data);
    written += data.length;
  }
}

/**
 * `psyops apk build` on a big tree against `tar -c | gzip -6` of the same tree (alternating, median),
 * then `psyops apk index` of `packages` small packages, cold (no previous index) and warm.
 */
export async function benchApkpkg(treeMiB: number, packages: number, rounds: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'psyops-bench-apkpkg-'));
  try {
    writeTree(join(dir, 'tree'), treeMiB);
    const spec = join(dir, 'big.json');
    writeFileSync(
      spec,
      JSON.stringify({ name: 'big', version: '1.0-r0', arch: 'noarch', description: 'bench', url: 'https://example.org', license: 'MIT', tree: 'tree' }),
    );
    const build: number[] = [];
    const tarGzip: number[] = [];
    await timed('tar', ['-cf', '/dev/null', '-C', join(dir, 'tree'), '.']); // warm the page cache
    for (let round = 0; round < rounds; round++) {
      build.push(await timed('node', [CLI, 'apk', 'build', spec, '--out', join(dir, 'out'), '--unsigned'], FIXED_EPOCH));
      tarGzip.push(await timed('sh', ['-c', `tar -cf - -C '${join(dir, 'tree')}' . | gzip -6 > '${join(dir, 'ref.tar.gz')}'`]));
    }
    const b = median(build);
    const t = median(tarGzip);
    console.log(`apkpkg build ${treeMiB} MiB tree: psyops apk build ${b.toFixed(2)} s, tar | gzip -6 ${t.toFixed(2)} s, ratio ${(b / t).toFixed(2)}x`);

    const repo = join(dir, 'repo');
    mkdirSync(join(repo, 'x86_64'), { recursive: true });
    for (let i = 0; i < packages; i++) {
      const built = await buildPackage(
        {
          name: `pkg${i}`,
          version: `1.${i}-r0`,
          arch: 'x86_64',
          description: `package ${i}`,
          url: 'https://example.org',
          license: 'MIT',
          depends: i > 0 ? [`pkg${i - 1}`] : [],
          files: [{ path: `usr/share/pkg${i}/data`, content: `package ${i}\n`.repeat(100) }],
        },
        { sourceDateEpoch: 1700000000, compressionLevel: 6 },
      );
      writeFileSync(join(repo, 'x86_64', built.fileName), built.bytes);
    }
    const cold: number[] = [];
    const warm: number[] = [];
    for (let round = 0; round < rounds; round++) {
      rmSync(join(repo, 'x86_64', 'APKINDEX.tar.gz'), { force: true });
      cold.push(await timed('node', [CLI, 'apk', 'index', repo, '--unsigned'], FIXED_EPOCH));
      warm.push(await timed('node', [CLI, 'apk', 'index', repo, '--unsigned'], FIXED_EPOCH));
    }
    const nodeStart = await timed('node', [CLI, '--version']);
    console.log(
      `apkpkg index ${packages} packages: cold ${median(cold).toFixed(2)} s (target <= 2 s), warm ${median(warm).toFixed(2)} s (target <= 0.3 s); ` +
        `CLI start-up alone ${nodeStart.toFixed(2)} s`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  await benchResolve(Number(process.env.BENCH_APK_INDEX_ENTRIES ?? 25_000), rounds);
}

const seconds = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e9;

/**
 * Read + verify + resolve of the original psyopsOS world against signed main + community indexes
 * generated like Alpine's (`entries` together; 25,000 is about Alpine's x86_64 size). Cold: fresh
 * index objects each round, nothing cached; warm: the resolve again on indexes already read (what
 * build-iso does for the boot set). The reference, in the same process, is gunzip of the same
 * index files plus splitting them into lines: the least any reader does.
 */
export async function benchResolve(entries: number, rounds: number): Promise<void> {
  const repos = alpineLike({ size: entries });
  const key = await generateApkKey({ name: 'bench@example.org', bits: 4096, now: 1700000000 });
  const signing = { keyName: key.keyName, privateKey: key.privateKeyPem };
  const files = [repos.main, repos.community, repos.own].map((list) => createIndex(list, { sourceDateEpoch: 1700000000, key: signing, description: 'bench' }));
  const keys = keyRing({ [key.keyName]: key.publicKeyPem });
  const readAll = () => files.map((bytes, i) => ({ entries: readIndex(bytes, { keys, name: `repo${i}` }).entries }));
  let installed = 0;
  const coldRun = (): number => {
    const start = process.hrtime.bigint();
    installed = resolve(ORIGINAL_WORLD, readAll()).length;
    return seconds(start);
  };
  const first = coldRun();
  const cold: number[] = [];
  const warm: number[] = [];
  const reference: number[] = [];
  const indexes = readAll();
  resolve(ORIGINAL_WORLD, indexes);
  for (let round = 0; round < rounds; round++) {
    cold.push(coldRun());
    let start = process.hrtime.bigint();
    resolve(ORIGINAL_WORLD, indexes);
    warm.push(seconds(start));
    start = process.hrtime.bigint();
    for (const bytes of files) gunzipSync(bytes).toString('utf8').split('\n');
    reference.push(seconds(start));
  }
  const c = median(cold);
  const w = median(warm);
  const r = median(reference);
  console.log(
    `apkpkg resolve ${entries} index entries (${installed} installed): cold read + verify + resolve ${c.toFixed(3)} s (first in process ${first.toFixed(3)} s; target <= 1 s), ` +
      `warm resolve ${w.toFixed(3)} s (target <= 0.2 s); gunzip + split ${r.toFixed(3)} s, ratio cold ${(c / r).toFixed(1)}x`,
  );
}
