import { posix } from 'node:path';

/** Content-Type by file name: what both `site serve` and `site deploy` send. */
export function contentTypeOf(path: string): string {
  const name = posix.basename(path);
  if (name.endsWith('.tar.gz') || name.endsWith('.tgz')) return 'application/gzip';
  switch (posix.extname(name).toLowerCase()) {
    case '.html':
      return 'text/html; charset=utf-8';
    case '.json':
      return 'application/json';
    case '.minisig':
    case '.pub':
    case '.txt':
      return 'text/plain; charset=utf-8';
    case '.iso':
      return 'application/x-iso9660-image';
    case '.tar':
      return 'application/x-tar';
    default:
      return 'application/octet-stream';
  }
}

/**
 * Pointers (index.*, latest.*, os/update-*.json, the APKINDEX) and other documents that change in place are
 * cached briefly; versioned artifacts (OS images, update tars, packages, and their signatures) never
 * change under their name, so caches may keep them for a year.
 */
export function cacheControlOf(path: string): string {
  return isVersionedArtifact(path) ? 'public, max-age=31536000, immutable' : 'public, max-age=60';
}

function isVersionedArtifact(path: string): boolean {
  const name = posix.basename(path);
  return /\.(iso|img|tar|apk)(\.minisig)?$/.test(name) && !isPointer(path);
}

/** Documents a client reads first to find everything else: deploy uploads them last. */
export function isPointer(path: string): boolean {
  const name = posix.basename(path);
  // os/update-<arch>.json names an update tar, as os/latest.json names an image.
  return /^(index|latest|manifest)\./.test(name) || name.startsWith('APKINDEX') || /(^|\/)os\/update-[^/]+\.json(\.minisig)?$/.test(path);
}
