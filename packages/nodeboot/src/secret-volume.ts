import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { decodePublicKey, FileAccessError, type PublicKey } from '@psyops/signing';
import { NODE_NAME } from '@psyops/siteapi/schemas';
import { NodeInputError, SecretVolumeError, ToolError } from './errors.js';
import { generateSshHostKey, sshPublicKeyOf } from './ssh.js';

/** The file system label nodeboot looks for. */
export const SECRET_LABEL = 'psyops-secret';

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
  if (!NODE_NAME.test(name)) throw new NodeInputError(`node name "${name}" must be lower-case letters, digits and dashes (at most 63, not starting with a dash)`);
  return name;
}

/** A MAC address as `aa:bb:cc:dd:ee:ff` (dashes accepted, case folded). */
export function normalizeMac(mac: string): string {
  const normalized = mac.trim().toLowerCase().replaceAll('-', ':');
  if (!MAC.test(normalized)) throw new NodeInputError(`"${mac}" is not a MAC address (expected six hex pairs such as 52:54:00:12:34:56)`);
  return normalized;
}

/** An http(s) site URL without trailing slashes; NodeInputError naming `source` otherwise. */
export function parseSiteUrl(url: string, source: string): string {
  const trimmed = url.trim();
  let parsed: URL;
  try {
    parsed = new URL(trimmed);
  } catch {
    throw new NodeInputError(`${source}: "${trimmed}" is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new NodeInputError(`${source}: "${trimmed}" is not an http(s) URL`);
  return trimmed.replace(/\/+$/, '');
}

export interface SecretFile {
  name: string;
  data: string;
  /** Private files are 0600, public ones 0644. */
  mode: number;
}

export interface NodeSecretsInput {
  name: string;
  mac: string;
  /** The workspace's minisign public key file, as text. */
  minisignPublicKey: string;
  /** network.interfaces content; default: DHCP on psy0. */
  interfaces?: string;
  siteUrl?: string;
  testonlyToor?: boolean;
  /** The node's psynet certificate and private key (PEM), and the CA certificate. */
  psynet?: { hostCert: string; hostKey: string; caCert: string };
}

export interface NodeSecrets {
  files: SecretFile[];
  /** What the workspace records: the private parts exist only on the volume. */
  ageRecipient: string;
  sshHostPublicKey: string;
}

/** Checks what `node create` was given, before anything is generated or written. */
export function checkNodeSecretsInput(input: NodeSecretsInput): void {
  checkNodeName(input.name);
  normalizeMac(input.mac);
  decodePublicKey(input.minisignPublicKey, 'workspace minisign public key');
  if (input.siteUrl !== undefined) parseSiteUrl(input.siteUrl, '--site-url');
  if (input.interfaces !== undefined && !/\S/.test(input.interfaces)) throw new NodeInputError('the interfaces file is empty');
}

/** Generates the node's keys and lays out every file of its secret volume. */
export async function generateNodeSecrets(input: NodeSecretsInput): Promise<NodeSecrets> {
  checkNodeSecretsInput(input);
  const identity = await generateX25519Identity();
  const ageRecipient = await identityToRecipient(identity);
  const ssh = generateSshHostKey(`root@${input.name}`);
  const files: SecretFile[] = [
    { name: SECRET_FILES.nodename, data: `${input.name}\n`, mode: 0o600 },
    { name: SECRET_FILES.ageKey, data: `# public key: ${ageRecipient}\n${identity}\n`, mode: 0o600 },
    { name: SECRET_FILES.minisignPublicKey, data: input.minisignPublicKey.endsWith('\n') ? input.minisignPublicKey : `${input.minisignPublicKey}\n`, mode: 0o644 },
    { name: SECRET_FILES.sshHostKey, data: ssh.privateKey, mode: 0o600 },
    { name: SECRET_FILES.mactab, data: `${NODE_INTERFACE} ${normalizeMac(input.mac)}\n`, mode: 0o644 },
    { name: SECRET_FILES.interfaces, data: input.interfaces ?? DEFAULT_INTERFACES, mode: 0o644 },
  ];
  if (input.psynet) {
    files.push(
      { name: SECRET_FILES.psynetCert, data: input.psynet.hostCert, mode: 0o644 },
      { name: SECRET_FILES.psynetKey, data: input.psynet.hostKey, mode: 0o600 },
      { name: SECRET_FILES.psynetCa, data: input.psynet.caCert, mode: 0o644 },
    );
  }
  if (input.siteUrl !== undefined) files.push({ name: SECRET_FILES.siteUrl, data: `${parseSiteUrl(input.siteUrl, '--site-url')}\n`, mode: 0o644 });
  if (input.testonlyToor) {
    files.push({ name: SECRET_FILES.testOnly, data: `# TEST ONLY, NEVER IN PRODUCTION: adds user toor with a blank password\n${TESTONLY_TOOR_VARIABLE}=yes\n`, mode: 0o600 });
  }
  return { files: files.sort((a, b) => (a.name < b.name ? -1 : 1)), ageRecipient, sshHostPublicKey: ssh.publicKey };
}

/** Refuses an existing output unless `force`. */
export function assertOutputFree(path: string, force: boolean): void {
  if (!force && existsSync(path)) throw new FileAccessError(`refusing to overwrite ${path} (use -f to replace it)`, 'FILE_EXISTS', path);
}

async function stageFiles(dir: string, files: readonly SecretFile[]): Promise<void> {
  for (const file of files) {
    await writeFile(join(dir, file.name), file.data, { mode: file.mode, flag: 'wx' });
    await chmod(join(dir, file.name), file.mode); // the umask may have narrowed it
  }
}

/** Writes the files into `dir` (0700): staged beside it, then renamed into place. */
export async function writeSecretDir(dir: string, files: readonly SecretFile[], options: { force?: boolean } = {}): Promise<void> {
  assertOutputFree(dir, options.force ?? false);
  await mkdir(dirname(dir), { recursive: true });
  const staging = await mkdtemp(join(dirname(dir), `.${basename(dir)}.`));
  try {
    await chmod(staging, 0o700);
    await stageFiles(staging, files);
    if (existsSync(dir)) await rm(dir, { recursive: true, force: true });
    await rename(staging, dir);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/** The path of a host tool, or a ToolError naming its Debian package. */
export function findTool(name: string, debianPackage: string): string {
  for (const dir of ['/usr/sbin', '/sbin', '/usr/bin', '/bin']) if (existsSync(join(dir, name))) return join(dir, name);
  throw new ToolError(`${name} is not installed (Debian package ${debianPackage})`);
}

/** Runs a tool with a timeout; rejects with one line naming it and its stderr. */
export function runTool(path: string, args: readonly string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(path, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) {
        const why = String(stderr).trim().split('\n').at(-1) || error.message;
        reject(new ToolError(`${basename(path)} failed: ${why}`, { cause: error }));
      } else resolve(String(stdout));
    });
  });
}

/**
 * Writes an ext4 image labelled `label` (mkfs.ext4, with `-d contentDir` when given: no root, no
 * loop mount) to a temporary file beside `out`, then renames it into place; 0600.
 */
export async function writeExt4Image(out: string, label: string, sizeMiB: number, contentDir?: string): Promise<void> {
  const mkfs = findTool('mkfs.ext4', 'e2fsprogs');
  await mkdir(dirname(out), { recursive: true });
  const tempImage = join(dirname(out), `.${basename(out)}.${process.pid}.tmp`);
  try {
    await runTool(mkfs, ['-q', '-F', '-t', 'ext4', '-L', label, '-E', 'root_owner=0:0', ...(contentDir ? ['-d', contentDir] : []), tempImage, `${sizeMiB}M`]);
    await chmod(tempImage, 0o600);
    await rename(tempImage, out);
  } catch (error) {
    await rm(tempImage, { force: true });
    throw error;
  }
}

/** Size of the secret image in MiB: ample for the files, small enough for any USB stick. */
const IMAGE_SIZE_MIB = 8;

/** Writes an ext4 image labelled psyops-secret holding `files`. */
export async function writeSecretImage(out: string, files: readonly SecretFile[], options: { force?: boolean } = {}): Promise<void> {
  assertOutputFree(out, options.force ?? false);
  const staging = await mkdtemp(join(tmpdir(), 'psyops-secret-'));
  try {
    const content = join(staging, 'volume');
    await mkdir(content, { mode: 0o700 });
    await stageFiles(content, files);
    await writeExt4Image(out, SECRET_LABEL, IMAGE_SIZE_MIB, content);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
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

async function readSecretFile(dir: string, name: string): Promise<string | undefined> {
  const path = join(dir, name);
  let info;
  try {
    info = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SecretVolumeError(`${name} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (!info.isFile()) throw new SecretVolumeError(`${name} is not a regular file`);
  if (info.size > MAX_SECRET_FILE_BYTES) throw new SecretVolumeError(`${name} is larger than ${MAX_SECRET_FILE_BYTES} bytes`);
  return readFile(path, 'utf8');
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

/** Reads and validates every file of a mounted secret volume; throws SecretVolumeError naming the first bad file. */
export async function readSecretVolume(dir: string): Promise<SecretVolume> {
  const names = new Set(await readdir(dir).catch(() => [] as string[]));
  const known = new Set<string>(Object.values(SECRET_FILES));
  const read = (name: string) => readSecretFile(dir, name);
  const required = async (name: string) => {
    const text = await read(name);
    if (text === undefined) throw new SecretVolumeError(`the secret volume has no ${name}`);
    return text;
  };

  const nodename = (await required(SECRET_FILES.nodename)).split('\n')[0]!.trim();
  if (!NODE_NAME.test(nodename)) throw new SecretVolumeError(`nodename "${nodename.slice(0, 64)}" is not a node name`);

  const ageLines = (await required(SECRET_FILES.ageKey)).split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const ageIdentity = ageLines[0];
  if (ageLines.length !== 1 || !ageIdentity!.startsWith('AGE-SECRET-KEY-1')) throw new SecretVolumeError(`${SECRET_FILES.ageKey} must hold exactly one age identity (AGE-SECRET-KEY-1…)`);
  try {
    await identityToRecipient(ageIdentity!);
  } catch {
    throw new SecretVolumeError(`${SECRET_FILES.ageKey} holds no valid age X25519 identity`);
  }

  let minisignPublicKey: PublicKey;
  try {
    minisignPublicKey = decodePublicKey(await required(SECRET_FILES.minisignPublicKey), SECRET_FILES.minisignPublicKey);
  } catch (error) {
    if (error instanceof SecretVolumeError) throw error;
    throw new SecretVolumeError(`${SECRET_FILES.minisignPublicKey}: ${(error as Error).message}`);
  }

  const volume: SecretVolume = { dir, nodename, ageIdentity: ageIdentity!, minisignPublicKey, testonlyToor: false, unknownFiles: [], paths: {} };
  for (const [role, name] of Object.entries(SECRET_FILES)) if (names.has(name)) volume.paths[role as keyof typeof SECRET_FILES] = join(dir, name);

  const sshKey = await read(SECRET_FILES.sshHostKey);
  if (sshKey !== undefined) volume.sshHostKey = { privateKey: sshKey, publicKey: sshPublicKeyOf(sshKey, SECRET_FILES.sshHostKey) };

  const mactab = await read(SECRET_FILES.mactab);
  if (mactab !== undefined) volume.mactab = parseMactab(mactab);

  const interfaces = await read(SECRET_FILES.interfaces);
  if (interfaces !== undefined) {
    if (!/^\s*iface\s/m.test(interfaces)) throw new SecretVolumeError(`${SECRET_FILES.interfaces} declares no interface ("iface …")`);
    volume.interfaces = interfaces;
  }

  const cert = await read(SECRET_FILES.psynetCert);
  const key = await read(SECRET_FILES.psynetKey);
  if ((cert === undefined) !== (key === undefined)) throw new SecretVolumeError(`${SECRET_FILES.psynetCert} and ${SECRET_FILES.psynetKey} come together; one is missing`);
  if (cert !== undefined && key !== undefined) {
    if (!cert.includes('-----BEGIN NEBULA CERTIFICATE-----')) throw new SecretVolumeError(`${SECRET_FILES.psynetCert} is not a Nebula certificate`);
    if (!/-----BEGIN NEBULA (X25519 )?PRIVATE KEY-----/.test(key)) throw new SecretVolumeError(`${SECRET_FILES.psynetKey} is not a Nebula private key`);
    const ca = await read(SECRET_FILES.psynetCa);
    if (ca !== undefined && !ca.includes('-----BEGIN NEBULA CERTIFICATE-----')) throw new SecretVolumeError(`${SECRET_FILES.psynetCa} is not a Nebula certificate`);
    volume.psynet = { cert, key, ...(ca !== undefined ? { ca } : {}) };
  }

  const siteUrl = await read(SECRET_FILES.siteUrl);
  if (siteUrl !== undefined) {
    try {
      volume.siteUrl = parseSiteUrl(siteUrl.split('\n')[0]!, SECRET_FILES.siteUrl);
    } catch (error) {
      throw new SecretVolumeError((error as Error).message);
    }
  }

  const testOnly = await read(SECRET_FILES.testOnly);
  if (testOnly !== undefined) {
    volume.testonlyToor = testOnly.split('\n').some((line) => line.trim() === `${TESTONLY_TOOR_VARIABLE}=yes`);
  }

  volume.unknownFiles = [...names].filter((name) => !known.has(name) && name !== 'lost+found').sort();
  return volume;
}
