/** APK repositories for an image build: each APKINDEX fetched (or read from the cache when offline) and verified. */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApkFetchError, ApkSignatureError, ApkUntrustedError, INDEX_FILE, isUrl, loadKeysDir, readIndex, readSource, type IndexEntry } from '@psyops/apkpkg';
import { PsyopsError, writeFilesAtomically } from '@psyops/core';
import { ImageConfigError } from './errors.js';

export interface RepositorySource {
  /** http(s) base URL or local directory holding `<arch>/APKINDEX.tar.gz`. */
  url: string;
  /**
   * Directory of trusted public keys (`*.rsa.pub`) for this repository, and only for it: an
   * index signed by a key of another repository is refused. `alpineKeysDir(arch)` for Alpine's.
   */
  keysDir: string;
  /**
   * apk's repository tag (`@testing` in etc/apk/repositories): the repository serves only world
   * entries `name@testing` and what they depend on.
   */
  tag?: string;
  /** For an Alpine repository: its path below the mirror (`v3.22/main`, `edge/testing`); the manifest's `alpine` release comes from it. */
  alpine?: string;
}

/**
 * This package's root. Resolved through the package name, not import.meta.url: the psyops CLI
 * bundles this code into its own file.
 */
function packageRoot(): string {
  try {
    return dirname(createRequire(import.meta.url).resolve('@psyops/imagebuild/package.json'));
  } catch {
    return fileURLToPath(new URL('..', import.meta.url));
  }
}

/** Architectures psyops ships Alpine's release keys for. */
export const ALPINE_KEY_ARCHES = ['x86_64', 'aarch64'] as const;

/**
 * Alpine's release public keys for `arch` as shipped with psyops (`alpine-keys/<arch>/`, as
 * Alpine's `alpine-keys` package installs them): the trust anchors of Alpine's repositories.
 */
export function alpineKeysDir(arch: string): string {
  if (!(ALPINE_KEY_ARCHES as readonly string[]).includes(arch)) {
    throw new ImageConfigError(
      `psyops ships no Alpine release keys for ${arch} (only ${ALPINE_KEY_ARCHES.join(', ')}): give the repository its own keys directory`,
    );
  }
  const dir = join(packageRoot(), 'alpine-keys', arch);
  if (!existsSync(dir)) throw new ImageConfigError(`Alpine's release keys are missing from this installation of @psyops/imagebuild (${dir}): reinstall it`);
  return dir;
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
  tag?: string;
  alpine?: string;
  arch: string;
  entries: IndexEntry[];
  description?: string;
  /** SHA-256 (hex) of the verified APKINDEX.tar.gz. */
  indexSha256: string;
  /** Where the index came from: downloaded (or read from the local directory) now, or the cache (offline). */
  indexFrom: 'repository' | 'cache';
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

/** The same error class with the repository named first (and, for a signature it does not accept, the keys it trusts). */
function inRepository(error: unknown, url: string, keysDir: string): Error {
  if (!(error instanceof PsyopsError)) return error as Error;
  const trust = error instanceof ApkUntrustedError || error instanceof ApkSignatureError ? ` (trusting only the keys in ${keysDir})` : '';
  if (error.message.includes(url) && trust === '') return error;
  const Type = error.constructor as new (message: string, options?: ErrorOptions) => PsyopsError;
  const message = error.message.startsWith(`repository ${url}: `) ? error.message.slice(`repository ${url}: `.length) : error.message;
  return new Type(`repository ${url}${trust}: ${message}`, { cause: error });
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
      indexFrom: options.offline ? 'cache' : 'repository',
    };
    if (index.description !== undefined) loaded.description = index.description;
    if (source.tag !== undefined) loaded.tag = source.tag;
    if (source.alpine !== undefined) loaded.alpine = source.alpine;
    return loaded;
  } catch (error) {
    throw inRepository(error, url, source.keysDir);
  }
}

/**
 * Loads each repository's `<arch>/APKINDEX.tar.gz`, verified against that repository's keys, in
 * the order given (earlier repositories win ties in resolve). Verified indexes are kept in the
 * cache so that `offline` builds can use them. Every error names the repository; with several
 * failing, the error is the first one's in that order.
 */
export async function loadRepositories(sources: readonly RepositorySource[], options: LoadRepositoriesOptions): Promise<LoadedRepository[]> {
  // Side by side, but a failure is the first failing repository's in the order given, not whichever failed first.
  const results = await Promise.allSettled(sources.map((source) => loadRepository(source, options)));
  const failed = results.find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((result) => (result as PromiseFulfilledResult<LoadedRepository>).value);
}
