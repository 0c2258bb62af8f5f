/**
 * @psyops/imagebuild: from APK repositories and an overlay to a bootable, signed, reproducible
 * psyopsOS image, on any Linux host, without root, Docker or an Alpine system.
 */
export { buildIso, STAGES } from './build.js';
export type { BuildIsoOptions, BuildIsoResult, BuildProgress, ImageManifest, ImageSettings, StageName } from './build.js';
export { loadRepositories, normalizeRepositoryUrl, repositoryLocation, cachedIndexPath } from './repositories.js';
export type { RepositorySource, LoadRepositoriesOptions, LoadedRepository } from './repositories.js';
export { fetchPackages, cachedPackagePath } from './packages.js';
export type { FetchPackagesOptions, FetchedPackage } from './packages.js';
export { assembleRootTree, extractTree, findKernel, findStaticBusybox, FIRSTBOOT_DIR } from './rootfs.js';
export type { AssembleRootTreeOptions, RootTree, ExtractedTree, SpecialEntry, DeviceEntry, KernelFiles } from './rootfs.js';
export { buildModloop, buildRootImage } from './squashfs.js';
export type { ModloopOptions, RootImageOptions, SquashfsCompression } from './squashfs.js';
export { buildInitramfs, EARLY_BOOT_MODULES } from './initramfs.js';
export type { InitramfsOptions, InitramfsResult } from './initramfs.js';
export { initScript } from './init-script.js';
export type { InitScriptOptions } from './init-script.js';
export { bootLoaderConfigs, buildEfiBoot, volumeIdFor, MAX_VOLUME_ID_LENGTH } from './bootloader.js';
export type { BootLoaderConfigOptions, BootLoaderConfigs, EfiBootOptions, EfiBoot } from './bootloader.js';
export { buildApkovl, RUNLEVELS, POSTBOOT_HOOK_PATH } from './apkovl.js';
export type { ApkovlOptions, BuildInfo } from './apkovl.js';
export { writeIso } from './iso.js';
export type { IsoFile, IsoOptions } from './iso.js';
export { bootInQemu, QemuAbortedError } from './qemu.js';
export type { QemuBootOptions, QemuBootResult, QemuDrive, QemuForward } from './qemu.js';
export { buildHostRepository, hostRepositoryInputs, isHostRepositoryCurrent, EXCLUDED_MODULE_DIRS } from './hostrepo.js';
export type { HostRepositoryOptions, HostRepository } from './hostrepo.js';
export { runStage, hashInputs } from './stage.js';
export type { StageResult } from './stage.js';
export { requireTools, requireHostFile, HOST_TOOLS, HOST_FILES } from './tools.js';
export type { HostTool, HostFile } from './tools.js';
export { ImageConfigError } from './errors.js';
