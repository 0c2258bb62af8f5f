import { PsyopsError } from '@psyops/core';

/** `psyops-node apply` could not fetch, verify or apply the node's config. */
export class ApplyError extends PsyopsError {
  override readonly code = 'APPLY_FAILED';
}

/** `psyops-node upgrade` could not read the repository, verify a package or install it. */
export class UpgradeError extends PsyopsError {
  override readonly code = 'UPGRADE_FAILED';
}

/** The ISO's signature does not check out: nothing was written. */
export class BootMediaSignatureError extends PsyopsError {
  override readonly code = 'BOOTMEDIA_BAD_SIGNATURE';
}

/** The target is not a usable boot device (a partition, not a block device, too small, not found). */
export class BootMediaDeviceError extends PsyopsError {
  override readonly code = 'BOOTMEDIA_BAD_DEVICE';
}

/** Writing the boot media failed, or what was read back differs from the ISO. */
export class BootMediaWriteError extends PsyopsError {
  override readonly code = 'BOOTMEDIA_WRITE_FAILED';
}

/** No usable secret volume is mounted: nothing from the site or an ISO can be verified. */
export class NoSecretVolumeError extends PsyopsError {
  override readonly code = 'NO_SECRET_VOLUME';
}
