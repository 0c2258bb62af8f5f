import { PsyopsError } from '@psyops/core';

/** A certificate or key file is not valid Nebula PEM/protobuf. */
export class CertificateFormatError extends PsyopsError {
  override readonly code = 'MALFORMED_CERT';
}

/** A host name that cannot be a DNS label. */
export class InvalidNameError extends PsyopsError {
  override readonly code = 'INVALID_NAME';
}

/** A role other than lighthouse, client or node. */
export class UnknownRoleError extends PsyopsError {
  override readonly code = 'UNKNOWN_ROLE';
}

/** The address plan in the workspace config is inconsistent (pool outside the network, overlap). */
export class AddressPlanError extends PsyopsError {
  override readonly code = 'BAD_ADDRESS_PLAN';
}

/** An explicit address that is malformed or outside the role's pool. */
export class AddressOutsidePoolError extends PsyopsError {
  override readonly code = 'ADDRESS_OUTSIDE_POOL';
}

/** An explicit address already held by another host. */
export class AddressTakenError extends PsyopsError {
  override readonly code = 'ADDRESS_TAKEN';
}

/** No address left in the role's pool. */
export class PoolFullError extends PsyopsError {
  override readonly code = 'POOL_FULL';
}

/** The host is not in the registry (allocate it first). */
export class HostNotFoundError extends PsyopsError {
  override readonly code = 'HOST_NOT_FOUND';
}

/** The name is allocated already with another role or address than asked for. */
export class HostConflictError extends PsyopsError {
  override readonly code = 'HOST_CONFLICT';
}

/** The registry file does not parse or breaks its invariants; it is never overwritten then. */
export class RegistryCorruptError extends PsyopsError {
  override readonly code = 'CORRUPT_REGISTRY';
}

/** Another process held the registry lock for longer than the bounded wait. */
export class RegistryLockedError extends PsyopsError {
  override readonly code = 'REGISTRY_LOCKED';
}

/** No CA in the workspace yet (psyops psynet ca init). */
export class CaMissingError extends PsyopsError {
  override readonly code = 'CA_MISSING';
}

/** The CA key does not belong to the CA certificate, or is not an Ed25519 key. */
export class CaKeyMismatchError extends PsyopsError {
  override readonly code = 'CA_KEY_MISMATCH';
}

/** The CA certificate is expired or not valid yet. */
export class CaExpiredError extends PsyopsError {
  override readonly code = 'CA_EXPIRED';
}

/** A CA file holds something that cannot be a root: not a CA, not self-signed. */
export class InvalidCaError extends PsyopsError {
  override readonly code = 'INVALID_CA';
}

/** The certificate was issued by a CA that is not the one given. */
export class UnknownIssuerError extends PsyopsError {
  override readonly code = 'UNKNOWN_ISSUER';
}

/** The certificate is expired or not valid yet. */
export class CertificateExpiredError extends PsyopsError {
  override readonly code = 'CERT_EXPIRED';
}

/** The CA signature over the certificate does not match. */
export class CertificateSignatureError extends PsyopsError {
  override readonly code = 'BAD_CERT_SIGNATURE';
}

/** The certificate asks for more than its CA allows (expiry, groups, addresses, subnets). */
export class CaConstraintError extends PsyopsError {
  override readonly code = 'CA_CONSTRAINT';
}

/** A duration that does not parse, is not positive, or ends after the CA. */
export class DurationError extends PsyopsError {
  override readonly code = 'BAD_DURATION';
}

/** The workspace lacks something a Nebula config needs (lighthouse endpoints, a signed cert). */
export class NebulaConfigError extends PsyopsError {
  override readonly code = 'BAD_NEBULA_CONFIG';
}
