/**
 * @psyops/apkpkg: Alpine APK v2 packages and signed APKINDEX repositories on any Linux host.
 * Build (like abuild 3.11), read and verify (like apk-tools 2.14), compare versions, resolve
 * dependencies, extract safely. The byte-level pieces (tar headers, the installed database)
 * are `@psyops/apkpkg/format`.
 */
export { buildPackage } from './build.js';
export type { BuildOptions, BuiltPackage } from './build.js';
export type { SignatureType } from './archive.js';
export { readSpecFile } from './spec.js';
export type { PackageSpec, FileSpec } from './spec.js';
export { readPackage, readIndex, apkFileKind, indexEntryOf, DEFAULT_MAX_INDEX_BYTES, DEFAULT_MAX_CONTROL_BYTES } from './read.js';
export type { ApkPackage, ApkFileEntry, ApkIndex, IndexEntry, VerifyOptions, InflateLimits, ReadPackageOptions, ReadIndexOptions } from './read.js';
export { indexRepository, createIndex, checkAgainstIndex, INDEX_FILE } from './repo.js';
export type { IndexOptions, ArchIndexResult } from './repo.js';
export { generateApkKey, readSigningKey, loadKeysDir, keyRing } from './keys.js';
export type { ApkKeyPair, ApkSigningKey, ApkKeyRing } from './keys.js';
export { compareVersions, isApkVersion, isValidVersion, versionOrderSymbol } from './version.js';
export type { VersionOrder } from './version.js';
export { resolve } from './resolve.js';
export type { RepositoryIndex, ResolvedPackage, ResolveOptions } from './resolve.js';
export { extractPackage } from './extract.js';
export type { ExtractOptions, ExtractResult } from './extract.js';
export { readSource, isUrl } from './source.js';
export type { FetchSourceOptions } from './source.js';
export { psyopsBaseSpec, nodebootSpec } from './project.js';
export type { PsyopsBaseOptions, NodebootOptions } from './project.js';
export {
  ApkFormatError,
  ApkSignatureError,
  ApkUntrustedError,
  ApkChecksumError,
  ApkTooLargeError,
  InvalidVersionError,
  InvalidDependencyError,
  InvalidSpecError,
  UnsafeEntryError,
  UnsatisfiableError,
  ApkFetchError,
  ApkKeyError,
  FileConflictError,
} from './errors.js';
