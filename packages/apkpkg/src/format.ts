/**
 * @psyops/apkpkg/format: apk's formats at the byte level, for tools that write apk's files
 * themselves (imagebuild's root tree and apkovl): tar headers as abuild writes them, the gzip
 * members of a package or index, and the installed database `apk add --root` leaves behind;
 * and a tar reader (ustar, pax, GNU long names) for other tar files, e.g. nodeboot's update tar.
 */
export { tarHeader, padding as tarPadding, readTar } from './tar.js';
export type { TarHeader, TarType, TarEntry, TarReadResult } from './tar.js';
export { splitGzipMembers } from './gzip.js';
export {
  formatInstalledDb,
  formatScriptsTar,
  formatTriggers,
  formatWorld,
  installedPackageOf,
  ownerOf,
  parseIdFile,
  parseInstalledDb,
  sha1Checksum,
} from './installed.js';
export type { InstalledPackage, OwnerIds } from './installed.js';
