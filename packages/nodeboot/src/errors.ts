import { PsyopsError } from '@psyops/core';

/** A node name, MAC address or other input to `node create` is not usable. */
export class NodeInputError extends PsyopsError {
  override readonly code = 'BAD_NODE_INPUT';
}

/** The secret volume is missing a required file, or a file on it is malformed. */
export class SecretVolumeError extends PsyopsError {
  override readonly code = 'BAD_SECRET_VOLUME';
}

/** The node config from the site cannot be used: unsigned, tampered, another node's, or malformed. */
export class NodeConfigRejectedError extends PsyopsError {
  override readonly code = 'CONFIG_REJECTED';
}

/** The site could not be reached (after the bounded retries). */
export class SiteUnreachableError extends PsyopsError {
  override readonly code = 'SITE_UNREACHABLE';
}

/** A fetch hit one of its limits: the deadline, the size limit or the redirect rules. */
export class FetchLimitError extends PsyopsError {
  override readonly code = 'FETCH_LIMIT';

  constructor(
    message: string,
    readonly limit: 'deadline' | 'size' | 'redirect',
  ) {
    super(message);
  }
}

/** An age file cannot be decrypted: not age, not for this identity, tampered with or truncated. */
export class AgeDecryptError extends PsyopsError {
  override readonly code = 'AGE_DECRYPT_FAILED';
}

/** A node name has no definition in the workspace. */
export class NodeNotFoundError extends PsyopsError {
  override readonly code = 'NODE_NOT_FOUND';
}

/** A node definition is not usable here (not JSON, or a recorded key malformed or missing). */
export class NodeDefinitionError extends PsyopsError {
  override readonly code = 'BAD_NODE_DEFINITION';
}
