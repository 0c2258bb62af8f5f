/**
 * @psyops/siteapi: the signed static site nodes configure themselves from (JSON API, APK
 * repository, OS images, update artifacts and their pointers, node configs), its S3 deploy that sends only what changed, and a
 * local static server. The document schemas are `@psyops/siteapi/schemas`; the node-name rule
 * without zod is `@psyops/siteapi/names`.
 */
export { buildSite } from './build.js';
export type { BuildSiteOptions, BuildSiteResult, UpdateArtifact } from './build.js';
export type { Lighthouse, OsUpdate } from './schemas.js';
export { deploySite, normalizePrefix } from './deploy.js';
export type { DeployOptions, DeployEvent, DeployResult, PlannedUpload } from './deploy.js';
export { serveSite } from './serve.js';
export type { ServeOptions, SiteServer } from './serve.js';
export {
  NodeDefinitionError,
  ImageInputError,
  UpdateInputError,
  SiteInputError,
  BucketNotFoundError,
  MissingCredentialsError,
  S3AccessError,
  S3UnreachableError,
  S3OperationError,
  DeployOptionsError,
} from './errors.js';
