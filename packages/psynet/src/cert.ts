import { createHash } from 'node:crypto';
import {
  CaConstraintError,
  CaExpiredError,
  CertificateExpiredError,
  CertificateFormatError,
  CertificateSignatureError,
  InvalidCaError,
  UnknownIssuerError,
} from './errors.js';
import { ed25519Sign, ed25519Verify } from './curve25519.js';
import { formatNet, type IPv4Net } from './ip.js';
import { decodePemBlocks, encodePem, PEM } from './pem.js';
import { ProtoWriter, readFields, readPackedUint32 } from './protobuf.js';

/** The signed part of a Nebula v1 certificate (RawNebulaCertificateDetails). */
export interface CertificateDetails {
  name: string;
  /** Host addresses with their network mask (host bits kept). */
  ips: IPv4Net[];
  /** Networks routed through this host (unsafe_routes), host bits cleared. */
  subnets: IPv4Net[];
  groups: string[];
  /** Unix seconds. */
  notBefore: number;
  notAfter: number;
  /** X25519 key for a host, Ed25519 key for a CA; 32 bytes. */
  publicKey: Uint8Array;
  isCA: boolean;
  /** Lower-case hex fingerprint of the issuing CA; '' for a CA. */
  issuer: string;
}

export interface NebulaCertificate {
  details: CertificateDetails;
  /** Ed25519 signature of the marshalled details, 64 bytes. */
  signature: Uint8Array;
}

/** Go's proto.Marshal of the details: ascending fields, defaults omitted, packed ips. */
export function marshalDetails(details: CertificateDetails): Uint8Array {
  const out = new ProtoWriter();
  const encoder = new TextEncoder();
  if (details.name !== '') out.lengthDelimited(1, encoder.encode(details.name));
  if (details.ips.length > 0)
    out.packedUint32(
      2,
      details.ips.flatMap((net) => [net.address, net.mask]),
    );
  if (details.subnets.length > 0)
    out.packedUint32(
      3,
      details.subnets.flatMap((net) => [net.address, net.mask]),
    );
  for (const group of details.groups) out.lengthDelimited(4, encoder.encode(group));
  if (details.notBefore !== 0) out.key(5, 0).varint(details.notBefore);
  if (details.notAfter !== 0) out.key(6, 0).varint(details.notAfter);
  if (details.publicKey.length > 0) out.lengthDelimited(7, details.publicKey);
  if (details.isCA) out.key(8, 0).varint(1);
  if (details.issuer !== '') out.lengthDelimited(9, Buffer.from(details.issuer, 'hex'));
  return out.finish();
}

/** The whole certificate's protobuf bytes (what the PEM holds and the fingerprint hashes). */
export function marshalCertificate(cert: NebulaCertificate): Uint8Array {
  const out = new ProtoWriter().lengthDelimited(1, marshalDetails(cert.details));
  if (cert.signature.length > 0) out.lengthDelimited(2, cert.signature);
  return out.finish();
}

/** Lower-case hex SHA-256 of the marshalled certificate, as nebula computes it. */
export function certificateFingerprint(cert: NebulaCertificate): string {
  return createHash('sha256').update(marshalCertificate(cert)).digest('hex');
}

/** Parses the protobuf bytes of one certificate, with nebula's checks. */
function unmarshalCertificate(bytes: Uint8Array, source = 'certificate'): NebulaCertificate {
  const fail = (reason: string) => new CertificateFormatError(`${source}: not a Nebula certificate (${reason})`);
  let detailsBytes: Uint8Array | undefined;
  let signature: Uint8Array = new Uint8Array(0);
  for (const field of readFields(bytes, fail)) {
    if (field.field === 1 && field.wireType === 2) detailsBytes = field.value;
    else if (field.field === 2 && field.wireType === 2) signature = field.value;
  }
  if (!detailsBytes) throw fail('encoded Details was nil');
  const details: CertificateDetails = {
    name: '',
    ips: [],
    subnets: [],
    groups: [],
    notBefore: 0,
    notAfter: 0,
    publicKey: new Uint8Array(0),
    isCA: false,
    issuer: '',
  };
  const ipValues: number[] = [];
  const subnetValues: number[] = [];
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const text = (value: Uint8Array, what: string) => {
    try {
      return decoder.decode(value);
    } catch {
      throw fail(`${what} is not valid UTF-8`);
    }
  };
  const toInt64 = (value: bigint) => Number(BigInt.asIntN(64, value));
  for (const field of readFields(detailsBytes, fail)) {
    switch (field.field) {
      case 1:
        if (field.wireType === 2) details.name = text(field.value, 'name');
        break;
      case 2:
      case 3: {
        const target = field.field === 2 ? ipValues : subnetValues;
        if (field.wireType === 2) target.push(...readPackedUint32(field.value, fail));
        else if (field.wireType === 0) target.push(Number(BigInt.asUintN(32, field.value)));
        break;
      }
      case 4:
        if (field.wireType === 2) details.groups.push(text(field.value, 'group'));
        break;
      case 5:
        if (field.wireType === 0) details.notBefore = toInt64(field.value);
        break;
      case 6:
        if (field.wireType === 0) details.notAfter = toInt64(field.value);
        break;
      case 7:
        if (field.wireType === 2) details.publicKey = new Uint8Array(field.value);
        break;
      case 8:
        if (field.wireType === 0) details.isCA = field.value !== 0n;
        break;
      case 9:
        if (field.wireType === 2) details.issuer = Buffer.from(field.value).toString('hex');
        break;
      default:
        break; // unknown fields are dropped, as Go's re-marshal drops them
    }
  }
  if (details.publicKey.length < 32) throw fail('public key was fewer than 32 bytes');
  const pairs = (values: number[], what: string): IPv4Net[] => {
    if (values.length % 2 !== 0) throw fail(`encoded ${what} should be in pairs, an odd number was found`);
    const nets: IPv4Net[] = [];
    for (let i = 0; i < values.length; i += 2) nets.push({ address: values[i]!, mask: values[i + 1]! });
    return nets;
  };
  details.ips = pairs(ipValues, 'IPs');
  details.subnets = pairs(subnetValues, 'Subnets');
  return { details, signature: new Uint8Array(signature) };
}

/** The PEM text of a certificate (`-----BEGIN NEBULA CERTIFICATE-----`). */
export function encodeCertificatePem(cert: NebulaCertificate): string {
  return encodePem(PEM.certificate, marshalCertificate(cert));
}

/** Every certificate in a PEM file (a CA bundle may hold several). */
export function parseCertificatesPem(text: string, source = 'certificate'): NebulaCertificate[] {
  const blocks = decodePemBlocks(text, source);
  if (blocks.length === 0) throw new CertificateFormatError(`${source}: no PEM block found (expected ${PEM.certificate})`);
  return blocks.map((block) => {
    if (block.type !== PEM.certificate) {
      throw new CertificateFormatError(`${source}: bytes did not contain a proper nebula certificate banner (found ${block.type})`);
    }
    return unmarshalCertificate(block.bytes, source);
  });
}

/** The first certificate of a PEM file, as `nebula-cert verify -crt` reads it. */
export function parseCertificatePem(text: string, source = 'certificate'): NebulaCertificate {
  return parseCertificatesPem(text, source)[0]!;
}

/** Signs details with a CA's 64-byte Ed25519 secret key (seed || public key). */
export function signCertificate(details: CertificateDetails, caSecretKey: Uint8Array): NebulaCertificate {
  return { details, signature: ed25519Sign(marshalDetails(details), caSecretKey) };
}

/** Whether the signature over the details matches `publicKey` (Ed25519). */
export function checkSignature(cert: NebulaCertificate, publicKey: Uint8Array): boolean {
  return ed25519Verify(marshalDetails(cert.details), cert.signature, publicKey);
}

/** Nebula's "expired": not valid yet, or past NotAfter. */
export function isExpired(cert: NebulaCertificate, now: number): boolean {
  return cert.details.notBefore > now || cert.details.notAfter < now;
}

function netContains(outer: IPv4Net, inner: IPv4Net): boolean {
  // nebula's CheckRootConstrains: inside the CA's (masked) network, with a mask at least as long.
  const leadingOnes = (mask: number) => Math.clz32(~mask >>> 0);
  return (inner.address & outer.mask) >>> 0 === (outer.address & outer.mask) >>> 0 && leadingOnes(inner.mask) >= leadingOnes(outer.mask);
}

/** The limits a CA puts on what it signs (nebula's CheckRootConstrains), in nebula's order. */
export function checkCaConstraints(ca: NebulaCertificate, cert: NebulaCertificate): void {
  const violated = (reason: string) => new CaConstraintError(`certificate ${cert.details.name} violates the constraints of CA ${ca.details.name}: ${reason}`);
  if (cert.details.notAfter > ca.details.notAfter) throw violated('certificate expires after signing certificate');
  if (cert.details.notBefore < ca.details.notBefore) throw violated('certificate is valid before the signing certificate');
  if (ca.details.groups.length > 0) {
    for (const group of cert.details.groups) {
      if (!ca.details.groups.includes(group)) throw violated(`certificate contained a group not present on the signing ca: ${group}`);
    }
  }
  if (ca.details.ips.length > 0) {
    for (const ip of cert.details.ips) {
      if (!ca.details.ips.some((caIp) => netContains(caIp, ip))) {
        throw violated(`certificate contained an ip assignment outside the limitations of the signing ca: ${formatNet(ip)}`);
      }
    }
  }
  if (ca.details.subnets.length > 0) {
    for (const subnet of cert.details.subnets) {
      if (!ca.details.subnets.some((caSubnet) => netContains(caSubnet, subnet))) {
        throw violated(`certificate contained a subnet assignment outside the limitations of the signing ca: ${formatNet(subnet)}`);
      }
    }
  }
}

/**
 * Reads a CA bundle the way `nebula-cert verify -ca` does: every block must be a CA, signed by
 * itself, and not expired.
 */
export function parseCaPool(text: string, now: number, source = 'CA certificate'): NebulaCertificate[] {
  const pool = parseCertificatesPem(text, source);
  for (const ca of pool) {
    if (!ca.details.isCA) throw new InvalidCaError(`${source}: ${ca.details.name}: certificate is not a CA`);
    if (!checkSignature(ca, ca.details.publicKey)) throw new InvalidCaError(`${source}: ${ca.details.name}: certificate is not self-signed`);
    if (isExpired(ca, now))
      throw new CaExpiredError(
        `${source}: ${ca.details.name}: CA certificate is expired (valid ${isoTime(ca.details.notBefore)} to ${isoTime(ca.details.notAfter)})`,
      );
  }
  return pool;
}

/** Checks a certificate against a CA pool at `now` (Unix seconds), as nebula's Verify does; returns its CA. */
export function verifyCertificate(cert: NebulaCertificate, pool: readonly NebulaCertificate[], now: number): NebulaCertificate {
  const name = cert.details.name;
  if (cert.details.issuer === '') throw new UnknownIssuerError(`${name}: no issuer in certificate (is it a CA certificate?)`);
  const ca = pool.find((candidate) => certificateFingerprint(candidate) === cert.details.issuer);
  if (!ca) throw new UnknownIssuerError(`${name}: could not find ca for the certificate: it was issued by another CA (${cert.details.issuer})`);
  if (isExpired(ca, now)) throw new CaExpiredError(`${name}: root certificate ${ca.details.name} is expired`);
  if (isExpired(cert, now)) {
    throw new CertificateExpiredError(
      `${name}: certificate is expired or not valid yet (valid ${isoTime(cert.details.notBefore)} to ${isoTime(cert.details.notAfter)})`,
    );
  }
  if (!checkSignature(cert, ca.details.publicKey)) throw new CertificateSignatureError(`${name}: certificate signature did not match CA ${ca.details.name}`);
  checkCaConstraints(ca, cert);
  return ca;
}

function isoTime(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
}

const pad = (value: number, width = 2) => String(Math.abs(value)).padStart(width, '0');

/** Go's time.Format(RFC3339) in the process's local zone: "…Z" only for a zero offset. */
export function formatRfc3339Local(seconds: number): string {
  const date = new Date(seconds * 1000);
  const offsetMinutes = -date.getTimezoneOffset();
  const local = new Date(date.getTime() + offsetMinutes * 60_000);
  const base = local.toISOString().slice(0, 19);
  if (offsetMinutes === 0) return `${base}Z`;
  return `${base}${offsetMinutes < 0 ? '-' : '+'}${pad(Math.trunc(offsetMinutes / 60))}:${pad(offsetMinutes % 60)}`;
}

/** Go's Time.String() in the local zone: "2026-11-25 17:37:39 +0000 UTC". */
function formatGoTime(seconds: number): string {
  const date = new Date(seconds * 1000);
  const offsetMinutes = -date.getTimezoneOffset();
  const local = new Date(date.getTime() + offsetMinutes * 60_000);
  // Go prints the tz database abbreviation; ICU knows it for American zones in en-US and for
  // European ones in en-GB, and falls back to "GMT+1"-style names elsewhere.
  const zoneName = (locale: string) =>
    new Intl.DateTimeFormat(locale, { timeZoneName: 'short' }).formatToParts(date).find((part) => part.type === 'timeZoneName')?.value ?? '';
  let zone = zoneName('en-US');
  if (/^GMT[+-]/.test(zone)) zone = zoneName('en-GB');
  const sign = offsetMinutes < 0 ? '-' : '+';
  return `${local.toISOString().slice(0, 19).replace('T', ' ')} ${sign}${pad(Math.trunc(offsetMinutes / 60))}${pad(offsetMinutes % 60)} ${zone}`;
}

/** The object `nebula-cert print -json` prints for a certificate (keys in its order). */
export interface CertificateJson {
  details: {
    groups: string[];
    ips: string[];
    isCa: boolean;
    issuer: string;
    name: string;
    notAfter: string;
    notBefore: string;
    publicKey: string;
    subnets: string[];
  };
  fingerprint: string;
  signature: string;
}

export function certificateToJson(cert: NebulaCertificate): CertificateJson {
  const d = cert.details;
  return {
    details: {
      groups: [...d.groups],
      ips: d.ips.map(formatNet),
      isCa: d.isCA,
      issuer: d.issuer,
      name: d.name,
      notAfter: formatRfc3339Local(d.notAfter),
      notBefore: formatRfc3339Local(d.notBefore),
      publicKey: Buffer.from(d.publicKey).toString('hex'),
      subnets: d.subnets.map(formatNet),
    },
    fingerprint: certificateFingerprint(cert),
    signature: Buffer.from(cert.signature).toString('hex'),
  };
}

/** One line, byte-identical to `nebula-cert print -json` (Go escapes <, > and & in strings). */
export function formatCertificateJson(cert: NebulaCertificate): string {
  return JSON.stringify(certificateToJson(cert)).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026');
}

/** The text form of `nebula-cert print`. */
export function formatCertificateText(cert: NebulaCertificate): string {
  const d = cert.details;
  const list = (items: string[]) => (items.length === 0 ? '[]' : `[\n${items.map((item) => `\t\t\t${item}\n`).join('')}\t\t]`);
  return (
    'NebulaCertificate {\n' +
    '\tDetails {\n' +
    `\t\tName: ${d.name}\n` +
    `\t\tIps: ${list(d.ips.map(formatNet))}\n` +
    `\t\tSubnets: ${list(d.subnets.map(formatNet))}\n` +
    `\t\tGroups: ${list(d.groups.map((group) => JSON.stringify(group)))}\n` +
    `\t\tNot before: ${formatGoTime(d.notBefore)}\n` +
    `\t\tNot After: ${formatGoTime(d.notAfter)}\n` +
    `\t\tIs CA: ${d.isCA}\n` +
    `\t\tIssuer: ${d.issuer}\n` +
    `\t\tPublic key: ${Buffer.from(d.publicKey).toString('hex')}\n` +
    '\t}\n' +
    `\tFingerprint: ${certificateFingerprint(cert)}\n` +
    `\tSignature: ${Buffer.from(cert.signature).toString('hex')}\n` +
    '}'
  );
}
