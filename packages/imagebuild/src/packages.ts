/** Packages of a resolved install set, fetched into a content-addressed cache and verified against their index. */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ApkFetchError, checkAgainstIndex, readSource, type IndexEntry, type ResolvedPackage } from '@psyops/apkpkg';
import { PsyopsError, writeFilesAtomically } from '@psyops/core';
import { abortable, repositoryLocation, type LoadedRepository } from './repositories.js';

export interface FetchPackagesOptions {
  cacheDir: string;
  /** Use only cached packages; a missing one is an error. */
  offline?: boolean;
  /** Parallel downloads (default 4). */
  concurrency?: number;
  /** Per download (default 60 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number, name: string) => void;
}

export interface FetchedPackage {
  entry: IndexEntry;
  /** The verified .apk in the cache. */
  path: string;
}

/** `<cacheDir>/packages/<hex of the C: SHA-1>.apk`: the same package from any repository is one file. */
export function cachedPackagePath(cacheDir: string, entry: IndexEntry): string {
  if (!/^Q1[A-Za-z0-9+/]{27}=$/.test(entry.identity))
    throw new ApkFetchError(`${entry.name}-${entry.version}: index checksum ${entry.identity} is not a Q1 SHA-1`);
  return join(cacheDir, 'packages', `${Buffer.from(entry.identity.slice(2), 'base64').toString('hex')}.apk`);
}

export async function isCached(path: string, entry: IndexEntry): Promise<boolean> {
  const info = await stat(path).catch(() => undefined);
  // Files only enter the cache verified; a size mismatch means the cache was tampered with.
  return info?.isFile() === true && (!entry.size || info.size === entry.size);
}

async function fetchOne(resolved: ResolvedPackage, repositories: readonly LoadedRepository[], options: FetchPackagesOptions): Promise<FetchedPackage> {
  const { entry } = resolved;
  const path = cachedPackagePath(options.cacheDir, entry);
  if (await isCached(path, entry)) return { entry, path };
  const file = `${entry.name}-${entry.version}.apk`;
  const repository = repositories[resolved.repository];
  if (!repository) throw new ApkFetchError(`${file}: resolved from repository #${resolved.repository}, but only ${repositories.length} were loaded`);
  if (options.offline) throw new ApkFetchError(`${file}: offline, and not in the package cache (${path}); run once online first`);
  // apk fetches from the directory of the entry's A: (noarch packages are indexed under the repository's arch).
  const location = repositoryLocation(repository.url, entry.arch ?? repository.arch, file);
  let bytes: Buffer;
  try {
    bytes = await abortable(readSource(location, options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }), options.signal);
  } catch (error) {
    if (error instanceof ApkFetchError || (error as { code?: string }).code === 'FILE_NOT_FOUND') {
      throw new ApkFetchError(`repository ${repository.url}: ${(error as Error).message}`, { cause: error });
    }
    throw error;
  }
  // Like apk for repository packages: the identity (C:, from the signed index) is what is trusted,
  // so no package signature is needed; readPackage still checks datahash and every file checksum.
  try {
    checkAgainstIndex(bytes, entry, { name: location });
  } catch (error) {
    if (!(error instanceof PsyopsError)) throw error;
    const Type = error.constructor as new (message: string, options?: ErrorOptions) => PsyopsError;
    throw new Type(`repository ${repository.url}: ${error.message}`, { cause: error });
  }
  await writeFilesAtomically([{ path, data: bytes }]);
  return { entry, path };
}

/**
 * Makes sure every package is in the cache, downloading what is missing (verified against the
 * index's C: and S: before it is renamed into place, so the cache only holds good files).
 * Returns the cached paths in input order. `ResolvedPackage.repository` indexes `repositories`:
 * pass resolve the repositories in the order loadRepositories returned them.
 */
export async function fetchPackages(
  packages: readonly ResolvedPackage[],
  repositories: readonly LoadedRepository[],
  options: FetchPackagesOptions,
): Promise<FetchedPackage[]> {
  const results: FetchedPackage[] = new Array(packages.length);
  const concurrency = Math.max(1, options.concurrency ?? 4);
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < packages.length) {
      const i = next++;
      options.signal?.throwIfAborted();
      results[i] = await fetchOne(packages[i]!, repositories, options);
      options.onProgress?.(++done, packages.length, packages[i]!.entry.name);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, packages.length) }, worker));
  return results;
}
