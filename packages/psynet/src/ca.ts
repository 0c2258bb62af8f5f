import { checkCaConstraints, checkSignature, isExpired, signCertificate, certificateFingerprint, type NebulaCertificate } from './cert.js';
import { CaExpiredError, CaKeyMismatchError, DurationError, InvalidCaError } from './errors.js';
import type { IPv4Net } from './ip.js';
import { generateCaKeyPair, type CaKeyPair } from './keys.js';

const UNIT_SECONDS: Record<string, number> = { h: 3600, m: 60, s: 1 };

/**
 * Parses a Go-style duration as nebula-cert takes it ("876000h", "8760h0m0s", "90m", "1h30m")
 * into whole seconds. Must be positive.
 */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (!/^(\d+(\.\d+)?[hms])+$/.test(trimmed)) {
    throw new DurationError(`invalid duration "${text}": use hours, minutes and seconds like 8760h, 720h30m or 90s`);
  }
  let seconds = 0;
  for (const [, amount, unit] of trimmed.matchAll(/(\d+(?:\.\d+)?)([hms])/g)) seconds += Number(amount) * UNIT_SECONDS[unit!]!;
  seconds = Math.floor(seconds);
  if (!(seconds > 0) || !Number.isSafeInteger(seconds)) throw new DurationError(`invalid duration "${text}": must be at least one second`);
  return seconds;
}

export interface CreateCaOptions {
  name: string;
  /** Lifetime in seconds (nebula-cert's default is one year). */
  durationSeconds: number;
  /** Unix seconds; NotBefore. */
  now: number;
  /** Networks host certificates must stay inside (e.g. the psynet network). */
  ips?: IPv4Net[];
  /** If set, the only groups host certificates may carry. */
  groups?: string[];
  subnets?: IPv4Net[];
}

/** A new self-signed Ed25519 Nebula CA, as `nebula-cert ca` makes it. */
export function createCa(options: CreateCaOptions): { cert: NebulaCertificate; key: CaKeyPair } {
  if (options.name.trim() === '') throw new InvalidCaError('a CA needs a name');
  if (!(options.durationSeconds > 0)) throw new DurationError('the CA duration must be positive');
  const key = generateCaKeyPair();
  const cert = signCertificate(
    {
      name: options.name,
      ips: options.ips ?? [],
      subnets: options.subnets ?? [],
      groups: options.groups ?? [],
      notBefore: options.now,
      notAfter: options.now + options.durationSeconds,
      publicKey: key.publicKey,
      isCA: true,
      issuer: '',
    },
    key.secretKey,
  );
  return { cert, key };
}

/** Checks, in nebula-cert sign's order, that a CA key and certificate can sign at `now`. */
export function assertCaUsable(ca: NebulaCertificate, caKey: CaKeyPair, now: number, source = 'CA'): void {
  if (!Buffer.from(ca.details.publicKey).equals(caKey.publicKey)) {
    throw new CaKeyMismatchError(`${source}: refusing to sign, root certificate does not match private key`);
  }
  if (!ca.details.isCA) throw new InvalidCaError(`${source}: ${ca.details.name} is not a CA certificate`);
  if (!checkSignature(ca, ca.details.publicKey)) throw new InvalidCaError(`${source}: ${ca.details.name} is not self-signed`);
  if (isExpired(ca, now)) {
    throw new CaExpiredError(`${source}: CA certificate ${ca.details.name} is expired (valid until ${new Date(ca.details.notAfter * 1000).toISOString()})`);
  }
}

export interface IssueOptions {
  ca: NebulaCertificate;
  caKey: CaKeyPair;
  name: string;
  /** Host address with the network's mask, e.g. 10.10.10.1/22. */
  ip: IPv4Net;
  groups: string[];
  subnets?: IPv4Net[];
  /** The host's X25519 public key. */
  publicKey: Uint8Array;
  /** Lifetime in seconds; without it the certificate ends one second before the CA, as nebula-cert does. */
  durationSeconds?: number;
  now: number;
}

/** A host certificate signed by the CA; refuses anything nebula-cert sign refuses. */
export function issueHostCertificate(options: IssueOptions): NebulaCertificate {
  const { ca, now } = options;
  assertCaUsable(ca, options.caKey, now);
  if (options.publicKey.length !== 32) throw new InvalidCaError('a host public key is 32 bytes');
  let notAfter = ca.details.notAfter - 1;
  if (options.durationSeconds !== undefined) {
    notAfter = now + options.durationSeconds;
    if (notAfter > ca.details.notAfter) {
      throw new DurationError(
        `duration ends ${new Date(notAfter * 1000).toISOString()}, after the CA expires (${new Date(ca.details.notAfter * 1000).toISOString()}); ` +
          'give a shorter --duration or none (then it ends with the CA)',
      );
    }
  }
  const details = {
    name: options.name,
    ips: [options.ip],
    subnets: options.subnets ?? [],
    groups: options.groups,
    notBefore: now,
    notAfter,
    publicKey: options.publicKey,
    isCA: false,
    issuer: certificateFingerprint(ca),
  };
  checkCaConstraints(ca, { details, signature: new Uint8Array(0) });
  return signCertificate(details, options.caKey.secretKey);
}
