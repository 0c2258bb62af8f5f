/** Signed APKINDEX.tar.gz for a repository directory (`<repo>/<arch>/*.apk`), like abuild's index step. */
import type { Stats } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileAccessError, writeFilesAtomically } from '@psyops/core';
import { indexTar, type SignatureType } from './archive.js';
import { signatureMember } from './build.js';
import { ApkFormatError } from './errors.js';
import { gzipMember } from './gzip.js';
import type { ApkSigningKey } from './keys.js';
import { formatIndexText, indexEntryOf, readIndex, readPackage, sortIndexEntries, type IndexEntry, type ReadPackageOptions } from './read.js';
import { compareVersions } from './version.js';

export const INDEX_FILE = 'APKINDEX.tar.gz';

export interface IndexOptions {
  /** Index timestamp (SOURCE_DATE_EPOCH); the CLI passes the current time when unset. */
  sourceDateEpoch: number;
  key?: ApkSigningKey;
  signatureType?: SignatureType;
  /** Text of the DESCRIPTION entry (abuild: `$repo $(git describe)`). */
  description?: string;
  /** Called once per package file that had to be read (not reused from the previous index). */
  onRead?: (file: string) => void;
}

/** Builds the signed APKINDEX.tar.gz bytes for index entries (sorted like apk index). */
export function createIndex(entries: IndexEntry[], options: Omit<IndexOptions, 'onRead'>): Buffer {
  const sorted = sortIndexEntries([...entries], compareVersions);
  const body = gzipMember(indexTar(options.description, formatIndexText(sorted), options.sourceDateEpoch));
  if (!options.key) return body;
  return Buffer.concat([signatureMember(body, options.key, options.signatureType ?? 'RSA', options.sourceDateEpoch), body]);
}

export interface ArchIndexResult {
  arch: string;
  /** Path of the APKINDEX.tar.gz written. */
  path: string;
  packages: number;
  /** Package files read this time (the others were reused from the previous index). */
  read: number;
}

/**
 * (Re)indexes `dir/<arch>/*.apk` for every arch directory in `dir` (or only `arches`): reads each
 * package (checking its internal hashes), writes `A:<arch>` (so noarch packages placed there can
 * be fetched), signs, and replaces APKINDEX.tar.gz atomically. A package whose size and mtime
 * are unchanged since the previous index is taken from that index instead of being read again.
 */
export async function indexRepository(dir: string, options: IndexOptions & { arches?: string[] }): Promise<ArchIndexResult[]> {
  let arches = options.arches;
  if (!arches) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (error) {
      throw fileAccessError(error, dir, 'repository directory');
    }
    arches = [];
    for (const name of names.sort()) {
      if (!/^[a-z0-9_]+$/.test(name)) continue;
      const files = await readdir(join(dir, name)).catch(() => [] as string[]);
      if (files.some((f) => f.endsWith('.apk'))) arches.push(name);
    }
    if (arches.length === 0) throw new ApkFormatError(`no <arch>/*.apk in repository directory ${dir}`);
  }
  const results: ArchIndexResult[] = [];
  for (const arch of arches) results.push(await indexArch(join(dir, arch), arch, options));
  return results;
}

async function previousEntries(indexPath: string): Promise<{ entries: Map<string, IndexEntry>; mtimeMs: number }> {
  const entries = new Map<string, IndexEntry>();
  try {
    const [bytes, info] = await Promise.all([readFile(indexPath), stat(indexPath)]);
    // Our own earlier output: its integrity matters, not who signed it (keys may rotate).
    for (const entry of readIndex(bytes, { allowUntrusted: true }).entries) entries.set(`${entry.name}-${entry.version}.apk`, entry);
    return { entries, mtimeMs: info.mtimeMs };
  } catch {
    return { entries, mtimeMs: -Infinity }; // no usable previous index: read everything
  }
}

async function indexArch(archDir: string, arch: string, options: IndexOptions): Promise<ArchIndexResult> {
  const indexPath = join(archDir, INDEX_FILE);
  let names: string[];
  try {
    names = (await readdir(archDir)).filter((n) => n.endsWith('.apk')).sort();
  } catch (error) {
    throw fileAccessError(error, archDir, 'repository arch directory');
  }
  const previous = await previousEntries(indexPath);
  // stat in parallel batches: 2,000 sequential awaits cost more than the whole warm index.
  const stats: Stats[] = [];
  for (let i = 0; i < names.length; i += 256) stats.push(...(await Promise.all(names.slice(i, i + 256).map((n) => stat(join(archDir, n))))));
  const reuse = names.map((name, i) => {
    const old = previous.entries.get(name);
    return old && old.size === stats[i]!.size && stats[i]!.mtimeMs < previous.mtimeMs ? old : undefined;
  });
  const entries: IndexEntry[] = [];
  let read = 0;
  for (let start = 0; start < names.length; start += 64) {
    const batch = names.slice(start, start + 64);
    // Read the changed files of a batch in parallel; parsing stays sequential (CPU bound).
    const contents = await Promise.all(batch.map((name, j) => (reuse[start + j] ? undefined : readFile(join(archDir, name)))));
    for (const [j, name] of batch.entries()) {
      const old = reuse[start + j];
      if (old) {
        entries.push({ ...old, arch });
        continue;
      }
      const path = join(archDir, name);
      const pkg = readPackage(contents[j]!, { name: path });
      const expected = `${pkg.info.pkgname}-${pkg.info.pkgver}.apk`;
      if (expected !== name) throw new ApkFormatError(`${path} holds ${expected}: apk fetches packages by <name>-<version>.apk, rename it`);
      entries.push(indexEntryOf(pkg, arch));
      options.onRead?.(path);
      read++;
    }
  }
  await writeFilesAtomically([{ path: indexPath, data: createIndex(entries, options) }]);
  return { arch, path: indexPath, packages: entries.length, read };
}

/**
 * Checks a package file against its index entry, as apk does before installing from a
 * repository: the `S:` size and `C:` identity must match, both checked before the data stream
 * is inflated.
 */
export function checkAgainstIndex(bytes: Uint8Array, entry: IndexEntry, options: Omit<ReadPackageOptions, 'indexEntry'> = {}): void {
  readPackage(bytes, { ...options, name: options.name ?? `${entry.name}-${entry.version}.apk`, indexEntry: entry });
}
