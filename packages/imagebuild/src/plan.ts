/**
 * The dry run of build-iso: the repositories' indexes loaded and verified (fetched, or from the
 * cache when offline) and the world resolved, without fetching a package, taking a lock or
 * writing anything but verified indexes into the cache.
 */
import type { ResolvedPackage } from '@psyops/apkpkg';
import { type ImageSettings, resolveSets, validatedArch } from './build.js';
import { cachedPackagePath, isCached } from './packages.js';
import { type LoadedRepository, loadRepositories, type RepositorySource } from './repositories.js';

export interface PlanIsoOptions {
  image: Pick<ImageSettings, 'flavor' | 'world' | 'kernel' | 'initramfsPackages'>;
  /** Highest priority first, as for buildIso. */
  repositories: RepositorySource[];
  cacheDir: string;
  /** Read the indexes from the cache only (verified again). */
  offline?: boolean;
  /** Per index download (default 60 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface PlannedPackage {
  name: string;
  version: string;
  /** URL (or absolute directory) of the repository it comes from. */
  repository: string;
  /**
   * What pulls it in: `world` (for the boot set `image.kernel` or `image.initramfsPackages`),
   * `install_if`, or the names of the packages that depend on it.
   */
  requiredBy: string[];
  /** Download size from the index (bytes; 0 when the index does not say). */
  size: number;
  /** Already in the package cache: a build would not download it. */
  cached: boolean;
}

export interface IsoPlan {
  arch: string;
  repositories: {
    url: string;
    keysDir: string;
    /** `repository`: downloaded (or read from the local directory) now; `cache`: the cached copy (offline). */
    indexFrom: LoadedRepository['indexFrom'];
    indexSha256: string;
    packages: number;
  }[];
  /** The root's packages, in install order. */
  packages: PlannedPackage[];
  /** The kernel and initramfs packages, in install order. */
  bootPackages: PlannedPackage[];
}

/**
 * What buildIso would install, and why: loads and verifies the indexes exactly as a build does
 * (the same trust, errors and cache) and resolves both package sets, fetching no package.
 */
export async function planIso(options: PlanIsoOptions): Promise<IsoPlan> {
  const arch = validatedArch(options.image);
  const repositories = await loadRepositories(options.repositories, {
    arch,
    cacheDir: options.cacheDir,
    offline: options.offline ?? false,
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const sets = resolveSets(options.image, repositories);
  const kernelPackage = `linux-${options.image.kernel}`;
  const planned = (set: readonly ResolvedPackage[], boot: boolean) =>
    Promise.all(
      set.map(async ({ entry, repository, requiredBy }): Promise<PlannedPackage> => {
        // The boot set's "world" is the kernel and the initramfs packages.
        const asked = boot ? (entry.name === kernelPackage ? 'image.kernel' : 'image.initramfsPackages') : 'world';
        const path = cachedPackagePath(options.cacheDir, entry);
        return {
          name: entry.name,
          version: entry.version,
          repository: repositories[repository]?.url ?? '',
          requiredBy: requiredBy.map((reason) => (reason === 'world' ? asked : reason)),
          size: entry.size ?? 0,
          cached: await isCached(path, entry),
        };
      }),
    );
  return {
    arch,
    repositories: repositories.map((repository) => ({
      url: repository.url,
      keysDir: repository.keysDir,
      indexFrom: repository.indexFrom,
      indexSha256: repository.indexSha256,
      packages: repository.entries.length,
    })),
    packages: await planned(sets.root, false),
    bootPackages: await planned(sets.boot, true),
  };
}
