/**
 * @psyops/siteapi: the signed static site nodes configure themselves from (JSON API, APK
 * repository, OS images, node configs), its S3 deploy that sends only what changed, and a
 * local static server.
 */
export { buildSite } from './build.js';
export type { BuildSiteOptions, BuildSiteResult } from './build.js';
export { deploySite, createS3Client, normalizePrefix, DEPLOY_STATE_KEY } from './deploy.js';
export type { DeployOptions, DeployEvent, DeployResult, PlannedUpload } from './deploy.js';
export { serveSite } from './serve.js';
export type { ServeOptions, SiteServer } from './serve.js';
export { contentTypeOf, cacheControlOf, isPointer, isVersionedArtifact } from './content.js';
export { SecretEncryptor } from './secrets.js';
export {
  siteSchemas,
  siteJsonSchema,
  nodeConfigSchema,
  nodeDefinitionSchema,
  osLatestSchema,
  lighthousesSchema,
  lighthouseSchema,
  siteIndexSchema,
  siteManifestSchema,
  imageManifestSchema,
  plainSecretSchema,
  encryptedSecretSchema,
} from './schemas.js';
export type { NodeConfig, NodeDefinition, OsLatest, OsImage, Lighthouse, ManifestEntry, SiteSchemaName } from './schemas.js';
export {
  NodeDefinitionError,
  ImageInputError,
  SiteInputError,
  BucketNotFoundError,
  MissingCredentialsError,
  S3AccessError,
  S3UnreachableError,
  S3OperationError,
  DeployOptionsError,
} from './errors.js';
