/**
 * @psyops/apkpkg: Alpine APK v2 packages and signed APKINDEX repositories on any Linux host.
 * Build (like abuild 3.11), read and verify (like apk-tools 2.14), compare versions, resolve
 * dependencies, extract safely.
 */
export { buildPackage, signatureMember } from './build.js';
export type { BuildOptions, BuiltPackage } from './build.js';
export { readSpecFile, validateSpec, collectContents, SCRIPT_NAMES } from './spec.js';
export type { PackageSpec, FileSpec, ScriptName, ScriptSource } from './spec.js';
export { readPackage, readIndex, apkFileKind, parseIndexText, formatIndexText, indexEntryOf } from './read.js';
export type { ApkPackage, ApkFileEntry, ApkIndex, IndexEntry, SignatureEntry, VerifyOptions } from './read.js';
export { indexRepository, createIndex, checkAgainstIndex, INDEX_FILE } from './repo.js';
export type { IndexOptions, ArchIndexResult } from './repo.js';
export { generateApkKey, readSigningKey, loadKeysDir, keyRing, parsePublicKey } from './keys.js';
export type { ApkKeyPair, ApkSigningKey, ApkKeyRing } from './keys.js';
export { compareVersions, isValidVersion, assertValidVersion, fuzzyMatchesVersion, versionOrderSymbol } from './version.js';
export type { VersionOrder } from './version.js';
export { parseDependency, parseDependencies, formatDependency, versionSatisfies, PACKAGE_NAME } from './dependency.js';
export type { Dependency, VersionOperator } from './dependency.js';
export { resolve } from './resolve.js';
export type { RepositoryIndex, ResolvedPackage } from './resolve.js';
export { extractPackage } from './extract.js';
export type { ExtractOptions, ExtractResult } from './extract.js';
export { readSource, isUrl } from './source.js';
export type { FetchSourceOptions } from './source.js';
export { parsePkgInfo, formatPkgInfo } from './pkginfo.js';
export type { PkgInfo } from './pkginfo.js';
export { splitGzipMembers } from './gzip.js';
export { tarHeader, padding as tarPadding } from './tar.js';
export type { TarHeader, TarType } from './tar.js';
export { formatInstalledDb, formatInstalledEntry, formatScriptsTar, formatTriggers, formatWorld, installedPackageOf, ownerOf, parseIdFile, sha1Checksum } from './installed.js';
export type { InstalledPackage, OwnerIds } from './installed.js';
export type { SignatureType } from './archive.js';
export {
  ApkFormatError,
  ApkSignatureError,
  ApkUntrustedError,
  ApkChecksumError,
  InvalidVersionError,
  InvalidDependencyError,
  InvalidSpecError,
  UnsafeEntryError,
  UnsatisfiableError,
  ApkFetchError,
  ApkKeyError,
} from './errors.js';
export { psyopsBaseSpec, nodebootSpec } from './project.js';
export type { PsyopsBaseOptions, NodebootOptions, ProjectPackageCommon } from './project.js';
