/**
 * @psyops/psynet: the psynet address plan, the allocation registry, a Nebula v1 certificate
 * authority and host certificates (byte-compatible with nebula-cert 1.6.1), Nebula configs and
 * hosts/DNS exports. The settings every node's Nebula shares are `@psyops/psynet/nebula-defaults`.
 */
export { DEFAULT_PLAN, resolvePlan } from './plan.js';
export type { Role, AddressPlan, AddressPlanConfig } from './plan.js';
export { parseCidr } from './ip.js';
export type { IPv4Net, Cidr } from './ip.js';
export { readRegistry, updateRegistry, allocateHost, releaseHost, findHost } from './registry.js';
export type { Registry, HostEntry, CertificateRecord, AllocateRequest, LockOptions } from './registry.js';
export { psynetFiles, initCa, readCa, readCaCertificate, signHost } from './files.js';
export type { PsynetFiles, InitCaOptions, SignHostOptions, SignedHost } from './files.js';
export { createCa, issueHostCertificate, parseDuration } from './ca.js';
export type { CreateCaOptions, IssueOptions } from './ca.js';
export {
  parseCertificatePem,
  parseCertificatesPem,
  encodeCertificatePem,
  certificateFingerprint,
  parseCaPool,
  verifyCertificate,
  certificateToJson,
  formatCertificateJson,
  formatCertificateText,
} from './cert.js';
export type { NebulaCertificate, CertificateDetails, CertificateJson } from './cert.js';
export { generateHostKeyPair, hostPublicKeyOf, encodeHostPrivateKey, parseHostPrivateKey, parseHostPublicKey } from './keys.js';
export type { HostKeyPair, CaKeyPair } from './keys.js';
export { nebulaConfig } from './nebula-config.js';
export type { NebulaConfigOptions, PkiSource } from './nebula-config.js';
export { hostsFragment, dnsRecords } from './exports.js';
export type { DnsRecord } from './exports.js';
export {
  CertificateFormatError,
  InvalidNameError,
  UnknownRoleError,
  AddressPlanError,
  AddressOutsidePoolError,
  AddressTakenError,
  PoolFullError,
  HostNotFoundError,
  HostConflictError,
  RegistryCorruptError,
  RegistryLockedError,
  CaMissingError,
  CaKeyMismatchError,
  CaExpiredError,
  InvalidCaError,
  UnknownIssuerError,
  CertificateExpiredError,
  CertificateSignatureError,
  CaConstraintError,
  DurationError,
  NebulaConfigError,
} from './errors.js';
