/**
 * @psyops/imagebuild: from APK repositories and an overlay to a bootable, signed, reproducible
 * psyopsOS image, on any Linux host, without root, Docker or an Alpine system.
 */
export { buildDisk, buildIso } from './build.js';
export type {
  BuildDiskOptions,
  BuildDiskResult,
  DiskManifest,
  BuildIsoOptions,
  BuildIsoResult,
  BuildProgress,
  ImageManifest,
  ImageSettings,
  PackageRecord,
  StageName,
} from './build.js';
export type { RepositorySource } from './repositories.js';
export { alpineKeysDir, ALPINE_KEY_ARCHES } from './repositories.js';
export { ARCH_OF_FLAVOR } from './build.js';
export { planIso } from './plan.js';
export type { IsoPlan, PlanIsoOptions, PlannedPackage } from './plan.js';
export { prepareDefaultImage } from './default-image.js';
export type { DefaultImageOptions } from './default-image.js';
export { bootInQemu, linkEndpoint, linkMac, NotAnIsoError, QemuAbortedError, QemuOptionError } from './qemu.js';
export type { QemuBootOptions, QemuBootResult, QemuDrive, QemuForward, QemuLink, QemuNetwork, QemuPublish } from './qemu.js';
export { ImageConfigError } from './errors.js';
export { DirectoryLockedError } from './lock.js';
export { diskGrubConfig, diskLayout, secretVolumeNodeName, ESP_LABEL, INITIAL_GRUBENV, SLOT_DESCRIPTION, SLOT_LABELS } from './disk-image.js';
export type { DiskPartition, SlotManifest } from './disk-image.js';
