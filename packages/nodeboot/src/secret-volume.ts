import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodePublicKey, type PublicKey } from '@psyops/signing';
// The name rule alone: @psyops/siteapi/schemas would evaluate zod, seconds at every boot under emulation.
import { NODE_NAME } from '@psyops/siteapi/names';
import { decodeAgeIdentity } from './age-decrypt.js';
import { NodeInputError, SecretVolumeError } from './errors.js';
import { sshPublicKeyOf } from './ssh.js';

/** The file system label nodeboot looks for. */
export const SECRET_LABEL = 'psyops-secret';
/**
 * The label of the optional state volume: a read-write ext4 file system that nodeboot mounts at
 * /var/lib/psyopsOS, so that the last good config outlives a reboot of the RAM-only OS.
 */
export const STATE_LABEL = 'psyops-state';

/** The files of a secret volume, by role. */
export const SECRET_FILES = {
  nodename: 'nodename',
  ageKey: 'age.key',
  minisignPublicKey: 'minisign.pubkey',
  sshHostKey: 'ssh_host_ed25519_key',
  mactab: 'mactab',
  interfaces: 'network.interfaces',
  psynetCert: 'psynet.host.crt',
  psynetKey: 'psynet.host.key',
  psynetCa: 'psynet.ca.crt',
  siteUrl: 'site.url',
  testOnly: 'TESTONLYNOPROD.env',
} as const;

/** The interface name the mactab gives the node's network card. */
export const NODE_INTERFACE = 'psy0';
/** What TESTONLYNOPROD.env says to add the blank-password `toor` user (as the original psyopsOS). */
export const TESTONLY_TOOR_VARIABLE = 'PSYOPSOS_TESTING_ONLY_NO_PROD_ADD_TOOR_BLANK_PW';

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const MAX_SECRET_FILE_BYTES = 64 * 1024;

export const DEFAULT_INTERFACES = `auto lo\niface lo inet loopback\n\nauto ${NODE_INTERFACE}\niface ${NODE_INTERFACE} inet dhcp\n`;

export function checkNodeName(name: string): string {
  if (!NODE_NAME.test(name))
    throw new NodeInputError(`node name "${name}" must be lower-case letters, digits and dashes (at most 63, not starting with a dash)`);
  return name;
}

/** A MAC address as `aa:bb:cc:dd:ee:ff` (dashes accepted, case folded). */
export function normalizeMac(mac: string): string {
  const normalized = mac.trim().toLowerCase().replaceAll('-', ':');
  if (!MAC.test(normalized)) throw new NodeInputError(`"${mac}" is not a MAC address (expected six hex pairs such as 52:54:00:12:34:56)`);
  return normalized;
}

/** The text with anything between `//` and `@` masked: an error must not echo a password. */
const maskCredentials = (text: string) => text.replace(/\/\/[^/]*@/, '//…@');

/**
 * An http(s) site URL without trailing slashes; NodeInputError naming `source` otherwise. A URL with
 * credentials (`user:pass@`) is refused: the site is public and signed, and a password on the secret
 * volume or in the image would travel in the clear over plain HTTP.
 */
export function parseSiteUrl(url: string, source: string): string {
  const trimmed = url.trim();
  const parsed = URL.parse(trimmed);
  if (parsed === null) throw new NodeInputError(`${source}: "${maskCredentials(trimmed)}" is not a URL`);
  if (parsed.username !== '' || parsed.password !== '')
    throw new NodeInputError(`${source}: the site URL of ${parsed.host} carries credentials (user:password@): refused, the site is public and signed`);
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new NodeInputError(`${source}: "${trimmed}" is not an http(s) URL`);
  return trimmed.replace(/\/+$/, '');
}

/** A validated secret volume, as nodeboot reads it. Never log this object: it holds the age identity. */
export interface SecretVolume {
  dir: string;
  nodename: string;
  /** The age identity (AGE-SECRET-KEY-1…). */
  ageIdentity: string;
  minisignPublicKey: PublicKey;
  /** Present when the volume has ssh_host_ed25519_key. */
  sshHostKey?: { privateKey: string; publicKey: string };
  mactab?: { name: string; mac: string }[];
  interfaces?: string;
  psynet?: { cert: string; key: string; ca?: string };
  siteUrl?: string;
  testonlyToor: boolean;
  /** Files nodeboot does not know (reported, otherwise ignored). */
  unknownFiles: string[];
  /** Paths of the files present on the volume, by role. */
  paths: Partial<Record<keyof typeof SECRET_FILES, string>>;
}

// Synchronous reads: a dozen small files, and each trip through libuv's thread pool costs
// milliseconds under emulation.
function readSecretFile(dir: string, name: string): string | undefined {
  const path = join(dir, name);
  let info;
  try {
    info = lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SecretVolumeError(`${name} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (!info.isFile()) throw new SecretVolumeError(`${name} is not a regular file`);
  if (info.size > MAX_SECRET_FILE_BYTES) throw new SecretVolumeError(`${name} is larger than ${MAX_SECRET_FILE_BYTES} bytes`);
  return readFileSync(path, 'utf8');
}

function parseMactab(text: string): { name: string; mac: string }[] {
  const entries = [];
  for (const line of text.split('\n')) {
    const trimmed = line.replace(/#.*/, '').trim();
    if (trimmed === '') continue;
    const [name, mac, ...rest] = trimmed.split(/\s+/);
    if (!name || !mac || rest.length > 0 || !/^[a-zA-Z0-9_.-]{1,15}$/.test(name) || !MAC.test(mac.toLowerCase())) {
      throw new SecretVolumeError(`mactab: "${trimmed}" is not "<interface> <mac>"`);
    }
    entries.push({ name, mac: mac.toLowerCase() });
  }
  if (entries.length === 0) throw new SecretVolumeError('mactab has no entry');
  return entries;
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Reads and validates every file of a mounted secret volume; throws SecretVolumeError naming the first bad file. */
export async function readSecretVolume(dir: string): Promise<SecretVolume> {
  const names = new Set(listDir(dir));
  const known = new Set<string>(Object.values(SECRET_FILES));
  const read = (name: string) => readSecretFile(dir, name);
  const required = (name: string) => {
    const text = read(name);
    if (text === undefined) throw new SecretVolumeError(`the secret volume has no ${name}`);
    return text;
  };

  const nodename = required(SECRET_FILES.nodename).split('\n')[0]!.trim();
  if (!NODE_NAME.test(nodename)) throw new SecretVolumeError(`nodename "${nodename.slice(0, 64)}" is not a node name`);

  const ageLines = required(SECRET_FILES.ageKey)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const ageIdentity = ageLines[0];
  if (ageLines.length !== 1 || !ageIdentity!.startsWith('AGE-SECRET-KEY-1'))
    throw new SecretVolumeError(`${SECRET_FILES.ageKey} must hold exactly one age identity (AGE-SECRET-KEY-1…)`);
  try {
    decodeAgeIdentity(ageIdentity!); // the keys are made at the first decryption
  } catch {
    throw new SecretVolumeError(`${SECRET_FILES.ageKey} holds no valid age X25519 identity`);
  }

  let minisignPublicKey: PublicKey;
  try {
    minisignPublicKey = decodePublicKey(required(SECRET_FILES.minisignPublicKey), SECRET_FILES.minisignPublicKey);
  } catch (error) {
    if (error instanceof SecretVolumeError) throw error;
    throw new SecretVolumeError(`${SECRET_FILES.minisignPublicKey}: ${(error as Error).message}`);
  }

  const volume: SecretVolume = { dir, nodename, ageIdentity: ageIdentity!, minisignPublicKey, testonlyToor: false, unknownFiles: [], paths: {} };
  for (const [role, name] of Object.entries(SECRET_FILES)) if (names.has(name)) volume.paths[role as keyof typeof SECRET_FILES] = join(dir, name);

  const sshKey = read(SECRET_FILES.sshHostKey);
  if (sshKey !== undefined) volume.sshHostKey = { privateKey: sshKey, publicKey: sshPublicKeyOf(sshKey, SECRET_FILES.sshHostKey) };

  const mactab = read(SECRET_FILES.mactab);
  if (mactab !== undefined) volume.mactab = parseMactab(mactab);

  const interfaces = read(SECRET_FILES.interfaces);
  if (interfaces !== undefined) {
    if (!/^\s*iface\s/m.test(interfaces)) throw new SecretVolumeError(`${SECRET_FILES.interfaces} declares no interface ("iface …")`);
    volume.interfaces = interfaces;
  }

  const cert = read(SECRET_FILES.psynetCert);
  const key = read(SECRET_FILES.psynetKey);
  if ((cert === undefined) !== (key === undefined))
    throw new SecretVolumeError(`${SECRET_FILES.psynetCert} and ${SECRET_FILES.psynetKey} come together; one is missing`);
  if (cert !== undefined && key !== undefined) {
    if (!cert.includes('-----BEGIN NEBULA CERTIFICATE-----')) throw new SecretVolumeError(`${SECRET_FILES.psynetCert} is not a Nebula certificate`);
    if (!/-----BEGIN NEBULA (X25519 )?PRIVATE KEY-----/.test(key)) throw new SecretVolumeError(`${SECRET_FILES.psynetKey} is not a Nebula private key`);
    const ca = read(SECRET_FILES.psynetCa);
    if (ca !== undefined && !ca.includes('-----BEGIN NEBULA CERTIFICATE-----'))
      throw new SecretVolumeError(`${SECRET_FILES.psynetCa} is not a Nebula certificate`);
    volume.psynet = { cert, key, ...(ca !== undefined ? { ca } : {}) };
  }

  const siteUrl = read(SECRET_FILES.siteUrl);
  if (siteUrl !== undefined) {
    try {
      volume.siteUrl = parseSiteUrl(siteUrl.split('\n')[0]!, SECRET_FILES.siteUrl);
    } catch (error) {
      throw new SecretVolumeError((error as Error).message);
    }
  }

  const testOnly = read(SECRET_FILES.testOnly);
  if (testOnly !== undefined) {
    volume.testonlyToor = testOnly.split('\n').some((line) => line.trim() === `${TESTONLY_TOOR_VARIABLE}=yes`);
  }

  volume.unknownFiles = [...names].filter((name) => !known.has(name) && name !== 'lost+found').sort();
  return volume;
}
