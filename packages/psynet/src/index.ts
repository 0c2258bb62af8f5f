/**
 * @psyops/psynet: the psynet address plan, the allocation registry, a Nebula v1 certificate
 * authority and host certificates (byte-compatible with nebula-cert 1.6.1), Nebula configs and
 * hosts/DNS exports.
 */
export {
  marshalDetails,
  marshalCertificate,
  unmarshalCertificate,
  certificateFingerprint,
  encodeCertificatePem,
  parseCertificatePem,
  parseCertificatesPem,
  signCertificate,
  checkSignature,
  isExpired,
  checkCaConstraints,
  parseCaPool,
  verifyCertificate,
  certificateToJson,
  formatCertificateJson,
  formatCertificateText,
} from './cert.js';
export type { CertificateDetails, NebulaCertificate, CertificateJson } from './cert.js';
export {
  generateHostKeyPair,
  hostPublicKeyOf,
  generateCaKeyPair,
  encodeHostPrivateKey,
  encodeHostPublicKey,
  encodeCaPrivateKey,
  parseHostPrivateKey,
  parseHostPublicKey,
  parseCaPrivateKey,
} from './keys.js';
export type { HostKeyPair, CaKeyPair } from './keys.js';
export { encodePem, decodePemBlocks, PEM } from './pem.js';
export { parseDuration, createCa, assertCaUsable, issueHostCertificate } from './ca.js';
export type { CreateCaOptions, IssueOptions } from './ca.js';
export { parseCidr, formatNet, ipToNumber, numberToIp, isIPv4 } from './ip.js';
export type { IPv4Net, Cidr } from './ip.js';
export { ROLES, ROLE_GROUPS, DEFAULT_PLAN, resolvePlan, assertRole, assertHostName } from './plan.js';
export type { Role, AddressPlan, AddressPlanConfig } from './plan.js';
export {
  emptyRegistry,
  parseRegistry,
  serializeRegistry,
  readRegistry,
  updateRegistry,
  withFileLock,
  allocateHost,
  releaseHost,
  findHost,
} from './registry.js';
export type { Registry, HostEntry, CertificateRecord, AllocateRequest, LockOptions } from './registry.js';
export { psynetFiles, initCa, readCa, readCaCertificate, signHost } from './files.js';
export type { PsynetFiles, InitCaOptions, SignHostOptions, SignedHost } from './files.js';
export { nebulaConfig } from './nebula-config.js';
export { nebulaCommonSettings } from './nebula-defaults.js';
export type { NebulaConfigOptions, PkiSource } from './nebula-config.js';
export { hostsFragment, dnsRecords } from './exports.js';
export type { DnsRecord } from './exports.js';
export * from './errors.js';
