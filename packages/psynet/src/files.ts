import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { FileAccessError, writeFilesAtomically, type FileToWrite, readTextIfExists } from '@psyops/core';
import { createCa, issueHostCertificate } from './ca.js';
import { certificateFingerprint, encodeCertificatePem, parseCertificatePem, type NebulaCertificate } from './cert.js';
import { CaMissingError } from './errors.js';
import { ipToNumber, type Cidr } from './ip.js';
import { encodeCaPrivateKey, encodeHostPrivateKey, generateHostKeyPair, parseCaPrivateKey, type CaKeyPair } from './keys.js';
import { assertHostName, ROLE_GROUPS, type AddressPlan } from './plan.js';
import { findHost, readRegistry, serializeRegistry, withFileLock, type HostEntry, type LockOptions } from './registry.js';

/** Where psynet keeps its state inside a workspace's psynet/ folder. */
export interface PsynetFiles {
  dir: string;
  registry: string;
  caCert: string;
  /** 0600. */
  caKey: string;
  hostsDir: string;
  hostCert(name: string): string;
  hostKey(name: string): string;
  hostConfig(name: string): string;
}

export function psynetFiles(dir: string): PsynetFiles {
  const hostsDir = join(dir, 'hosts');
  return {
    dir,
    registry: join(dir, 'registry.json'),
    caCert: join(dir, 'ca.crt'),
    caKey: join(dir, 'ca.key'),
    hostsDir,
    hostCert: (name) => join(hostsDir, `${assertHostName(name)}.crt`),
    hostKey: (name) => join(hostsDir, `${assertHostName(name)}.key`),
    hostConfig: (name) => join(hostsDir, `${assertHostName(name)}.yml`),
  };
}

export interface InitCaOptions {
  name: string;
  durationSeconds: number;
  now: number;
  /** Limit host certificates to this network (the psynet network). */
  network?: Cidr;
}

/** Creates psynet/ca.crt and psynet/ca.key (0600); refuses to replace an existing CA. */
export async function initCa(files: PsynetFiles, options: InitCaOptions): Promise<{ cert: NebulaCertificate; fingerprint: string }> {
  // Locked so that two `ca init` at once cannot both pass the existence check and replace each other.
  return withFileLock(files.caKey, () => createCaFiles(files, options));
}

async function createCaFiles(files: PsynetFiles, options: InitCaOptions): Promise<{ cert: NebulaCertificate; fingerprint: string }> {
  for (const [path, what] of [
    [files.caKey, 'CA key'],
    [files.caCert, 'CA certificate'],
  ] as const) {
    if ((await readTextIfExists(path, what)) !== undefined) {
      throw new FileAccessError(`refusing to overwrite existing ${what}: ${path} (every host certificate depends on it)`, 'FILE_EXISTS', path);
    }
  }
  const { cert, key } = createCa({
    name: options.name,
    durationSeconds: options.durationSeconds,
    now: options.now,
    ...(options.network ? { ips: [{ address: options.network.first, mask: options.network.mask }] } : {}),
  });
  await writeFilesAtomically([
    { path: files.caKey, data: encodeCaPrivateKey(key.secretKey), mode: 0o600 },
    { path: files.caCert, data: encodeCertificatePem(cert), mode: 0o644 },
  ]);
  return { cert, fingerprint: certificateFingerprint(cert) };
}

/** The workspace CA certificate (public part only). */
export async function readCaCertificate(files: PsynetFiles): Promise<NebulaCertificate> {
  const text = await readTextIfExists(files.caCert, 'CA certificate');
  if (text === undefined)
    throw new CaMissingError(`no psynet CA in this workspace (${files.caCert} is missing); create one with: psyops psynet ca init --name NAME`);
  return parseCertificatePem(text, files.caCert);
}

/** The workspace CA certificate and its Ed25519 key. */
export async function readCa(files: PsynetFiles): Promise<{ cert: NebulaCertificate; key: CaKeyPair }> {
  const cert = await readCaCertificate(files);
  const keyText = await readTextIfExists(files.caKey, 'CA key');
  if (keyText === undefined) throw new CaMissingError(`the psynet CA key ${files.caKey} is missing (the certificate ${files.caCert} is there)`);
  return { cert, key: parseCaPrivateKey(keyText, files.caKey) };
}

export interface SignHostOptions {
  name: string;
  /** Groups beyond the role's own. */
  extraGroups?: string[];
  durationSeconds?: number;
  /** The host's own X25519 public key (phones make their own); otherwise a key pair is generated. */
  publicKey?: Uint8Array;
  now: number;
  lock?: LockOptions;
}

export interface SignedHost {
  host: HostEntry;
  cert: NebulaCertificate;
  fingerprint: string;
  certPath: string;
  /** Absent when signed from a given public key. */
  keyPath?: string;
}

/**
 * Issues the host's certificate for its allocated address (with the network's prefix length)
 * and records fingerprint and expiry in the registry; certificate, key and registry are written
 * together, all or nothing, under the registry lock.
 */
export async function signHost(files: PsynetFiles, plan: AddressPlan, options: SignHostOptions): Promise<SignedHost> {
  const name = assertHostName(options.name);
  return withFileLock(
    files.registry,
    async () => {
      const registry = await readRegistry(files.registry);
      const host = findHost(registry, name);
      const { cert: ca, key: caKey } = await readCa(files);
      const groups = [...new Set([ROLE_GROUPS[host.role], ...(options.extraGroups ?? []).map((group) => group.trim()).filter((group) => group !== '')])];
      const pair = options.publicKey ? undefined : generateHostKeyPair();
      const cert = issueHostCertificate({
        ca,
        caKey,
        name,
        ip: { address: ipToNumber(host.ip), mask: plan.network.mask },
        groups,
        publicKey: options.publicKey ?? pair!.publicKey,
        ...(options.durationSeconds !== undefined ? { durationSeconds: options.durationSeconds } : {}),
        now: options.now,
      });
      const fingerprint = certificateFingerprint(cert);
      host.groups = groups;
      host.certificate = { fingerprint, notAfter: new Date(cert.details.notAfter * 1000).toISOString().replace('.000Z', 'Z') };
      const writes: FileToWrite[] = [{ path: files.hostCert(name), data: encodeCertificatePem(cert), mode: 0o644 }];
      if (pair) writes.push({ path: files.hostKey(name), data: encodeHostPrivateKey(pair.privateKey), mode: 0o600 });
      writes.push({ path: files.registry, data: serializeRegistry(registry), mode: 0o644 });
      await writeFilesAtomically(writes);
      // A key left from an earlier signing no longer matches this certificate.
      if (!pair) await unlink(files.hostKey(name)).catch(() => undefined);
      return { host, cert, fingerprint, certPath: files.hostCert(name), ...(pair ? { keyPath: files.hostKey(name) } : {}) };
    },
    options.lock,
  );
}
