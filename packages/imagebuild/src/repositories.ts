/** APK repositories for an image build: each APKINDEX fetched (or read from the cache when offline) and verified. */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import { ApkFetchError, INDEX_FILE, isUrl, loadKeysDir, readIndex, readSource, type IndexEntry } from '@psyops/apkpkg';
import { PsyopsError, writeFilesAtomically } from '@psyops/core';

export interface RepositorySource {
  /** http(s) base URL or local directory holding `<arch>/APKINDEX.tar.gz`. */
  url: string;
  /** Directory of trusted public keys (`*.rsa.pub`) for this repository. */
  keysDir: string;
}

export interface LoadRepositoriesOptions {
  arch: string;
  cacheDir: string;
  /** Use only the cached copy of each index (verified again); fail when it is missing. */
  offline?: boolean;
  /** Per download (default 60 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface LoadedRepository {
  /** The URL as given, or the absolute path of a local directory; no trailing slash. */
  url: string;
  keysDir: string;
  arch: string;
  entries: IndexEntry[];
  description?: string;
  /** SHA-256 (hex) of the verified APKINDEX.tar.gz. */
  indexSha256: string;
}

/** Without a trailing slash; local directories made absolute (the cache key must not depend on the cwd). */
function normalizeRepositoryUrl(url: string): string {
  const trimmed = url.replace(/\/+$/, '');
  return isUrl(trimmed) ? trimmed : resolvePath(trimmed);
}

/** Where a repository file lives: `<url>/<arch>/<file>`. */
export function repositoryLocation(url: string, arch: string, file: string): string {
  return isUrl(url) ? `${url}/${encodeURIComponent(arch)}/${encodeURIComponent(file)}` : join(url, arch, file);
}

/** `<cacheDir>/indexes/<sha256(url)>-<arch>.APKINDEX.tar.gz` */
export function cachedIndexPath(cacheDir: string, url: string, arch: string): string {
  const key = createHash('sha256').update(url).digest('hex');
  return join(cacheDir, 'indexes', `${key}-${arch}.${INDEX_FILE}`);
}

/** Resolves with `work`, or rejects as soon as `signal` aborts (the work itself is bounded by its own timeout). */
export async function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  signal.throwIfAborted();
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort!);
  }
}

/** The same error class with the repository named first. */
function inRepository(error: unknown, url: string): Error {
  if (!(error instanceof PsyopsError) || error.message.includes(url)) return error as Error;
  const Type = error.constructor as new (message: string, options?: ErrorOptions) => PsyopsError;
  return new Type(`repository ${url}: ${error.message}`, { cause: error });
}

async function loadRepository(source: RepositorySource, options: LoadRepositoriesOptions): Promise<LoadedRepository> {
  const url = normalizeRepositoryUrl(source.url);
  const { arch } = options;
  const cachePath = cachedIndexPath(options.cacheDir, url, arch);
  const location = repositoryLocation(url, arch, INDEX_FILE);
  try {
    const keys = await loadKeysDir(source.keysDir);
    let bytes: Buffer;
    if (options.offline) {
      bytes = await readFile(cachePath).catch(() => {
        throw new ApkFetchError(`repository ${url}: offline, and no cached ${arch}/${INDEX_FILE} (${cachePath}); run once online first`);
      });
    } else {
      bytes = await abortable(readSource(location, options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }), options.signal);
    }
    const index = readIndex(bytes, { keys, name: location });
    if (!options.offline) await writeFilesAtomically([{ path: cachePath, data: bytes }]);
    const loaded: LoadedRepository = {
      url,
      keysDir: source.keysDir,
      arch,
      entries: index.entries,
      indexSha256: createHash('sha256').update(bytes).digest('hex'),
    };
    if (index.description !== undefined) loaded.description = index.description;
    return loaded;
  } catch (error) {
    throw inRepository(error, url);
  }
}

/**
 * Loads each repository's `<arch>/APKINDEX.tar.gz`, verified against that repository's keys, in
 * the order given (earlier repositories win ties in resolve). Verified indexes are kept in the
 * cache so that `offline` builds can use them. Every error names the repository.
 */
export async function loadRepositories(sources: readonly RepositorySource[], options: LoadRepositoriesOptions): Promise<LoadedRepository[]> {
  return Promise.all(sources.map((source) => loadRepository(source, options)));
}
