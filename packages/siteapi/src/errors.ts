import { PsyopsError } from '@psyops/core';

/** A node definition in the workspace's nodes/ folder is not valid. */
export class NodeDefinitionError extends PsyopsError {
  override readonly code = 'BAD_NODE_DEFINITION';
}

/** An OS image or its JSON manifest in the images folder cannot be published. */
export class ImageInputError extends PsyopsError {
  override readonly code = 'BAD_IMAGE_INPUT';
}

/** An update artifact (`psyopsOS-<release>-<arch>.tar`) in the images folder cannot be published. */
export class UpdateInputError extends PsyopsError {
  override readonly code = 'BAD_UPDATE_INPUT';
}

/** A site input other than nodes and images (lighthouses, APK repository, output folder). */
export class SiteInputError extends PsyopsError {
  override readonly code = 'BAD_SITE_INPUT';
}

/** The deploy target bucket does not exist. */
export class BucketNotFoundError extends PsyopsError {
  override readonly code = 'BUCKET_NOT_FOUND';
}

/** No AWS credentials were found in the standard chain (environment, shared files, SSO, instance role). */
export class MissingCredentialsError extends PsyopsError {
  override readonly code = 'NO_AWS_CREDENTIALS';
}

/** The S3 server refused the credentials or the operation. */
export class S3AccessError extends PsyopsError {
  override readonly code = 'BUCKET_ACCESS_DENIED';
}

/** The S3 endpoint could not be reached. */
export class S3UnreachableError extends PsyopsError {
  override readonly code = 'STORAGE_UNREACHABLE';
}

/** Any other S3 failure, with the service's error name in the message. */
export class S3OperationError extends PsyopsError {
  override readonly code = 'STORAGE_ERROR';
}

/** A deploy was given options that cannot work (bad prefix, concurrency, missing directory). */
export class DeployOptionsError extends PsyopsError {
  override readonly code = 'BAD_DEPLOY_OPTIONS';
}
