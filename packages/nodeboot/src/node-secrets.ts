/**
 * A node's keys and the files of its secret volume, written as a folder or an ext4 image. Not
 * imported by the nodeboot program: age-encryption (key generation) is seconds of loading under emulation.
 */
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { decodePublicKey } from '@psyops/signing';
import { produceDirectoryAtomically } from '@psyops/core';
import { NodeInputError } from './errors.js';
import { assertOutputFree, throwIfInterrupted, writeExt4Image } from './ext4-image.js';
import {
  DEFAULT_INTERFACES,
  NODE_INTERFACE,
  SECRET_FILES,
  SECRET_LABEL,
  TESTONLY_TOOR_VARIABLE,
  checkNodeName,
  normalizeMac,
  parseSiteUrl,
} from './secret-volume.js';
import { generateSshHostKey } from './ssh.js';

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

/** Checks the input of a secret volume, before anything is generated or written. */
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
    {
      name: SECRET_FILES.minisignPublicKey,
      data: input.minisignPublicKey.endsWith('\n') ? input.minisignPublicKey : `${input.minisignPublicKey}\n`,
      mode: 0o644,
    },
    { name: SECRET_FILES.sshHostKey, data: ssh.privateKey, mode: 0o600 },
    { name: SECRET_FILES.mactab, data: `${NODE_INTERFACE} ${normalizeMac(input.mac)}\n`, mode: 0o644 },
    { name: SECRET_FILES.interfaces, data: input.interfaces ?? DEFAULT_INTERFACES, mode: 0o644 },
  ];
  if (input.psynet) files.push(...psynetSecretFiles(input.psynet));
  if (input.siteUrl !== undefined) files.push({ name: SECRET_FILES.siteUrl, data: `${parseSiteUrl(input.siteUrl, '--site-url')}\n`, mode: 0o644 });
  if (input.testonlyToor) {
    files.push({
      name: SECRET_FILES.testOnly,
      data: `# TEST ONLY, NEVER IN PRODUCTION: adds user toor with a blank password\n${TESTONLY_TOOR_VARIABLE}=yes\n`,
      mode: 0o600,
    });
  }
  return { files: sortFiles(files), ageRecipient, sshHostPublicKey: ssh.publicKey };
}

const sortFiles = (files: SecretFile[]) => files.sort((a, b) => (a.name < b.name ? -1 : 1));

function psynetSecretFiles(psynet: NonNullable<NodeSecretsInput['psynet']>): SecretFile[] {
  return [
    { name: SECRET_FILES.psynetCert, data: psynet.hostCert, mode: 0o644 },
    { name: SECRET_FILES.psynetKey, data: psynet.hostKey, mode: 0o600 },
    { name: SECRET_FILES.psynetCa, data: psynet.caCert, mode: 0o644 },
  ];
}

/** The volume's files with the psynet certificate, key and CA added: for keys generated before the certificate is signed. */
export function withPsynetFiles(files: readonly SecretFile[], psynet: NonNullable<NodeSecretsInput['psynet']>): SecretFile[] {
  const names = new Set<string>([SECRET_FILES.psynetCert, SECRET_FILES.psynetKey, SECRET_FILES.psynetCa]);
  return sortFiles([...files.filter((file) => !names.has(file.name)), ...psynetSecretFiles(psynet)]);
}

/** Writes the files into `dir` (a 0700 folder), each created with its final mode: a private one is 0600 from its first moment. */
async function stageFiles(dir: string, files: readonly SecretFile[]): Promise<void> {
  for (const file of files) {
    await writeFile(join(dir, file.name), file.data, { mode: file.mode, flag: 'wx' });
    await chmod(join(dir, file.name), file.mode); // the umask may have narrowed it
  }
}

export interface WriteSecretOptions {
  force?: boolean;
  /** Gives up: the staged files (and the image) are removed and the output is untouched (VolumeInterruptedError). */
  signal?: AbortSignal;
}

/**
 * Writes the files into `dir` (0700): staged in a 0700 folder beside it, then renamed into place.
 * The directory holding `dir` must exist.
 */
export async function writeSecretDir(dir: string, files: readonly SecretFile[], options: WriteSecretOptions = {}): Promise<void> {
  assertOutputFree(dir, options.force ?? false, 'dir');
  throwIfInterrupted(options.signal, dir);
  await produceDirectoryAtomically(
    dir,
    async (staging) => {
      await stageFiles(staging, files);
      throwIfInterrupted(options.signal, dir);
    },
    { mode: 0o700 },
  );
}

/** Size of the secret image in MiB: ample for the files, small enough for any USB stick. */
const IMAGE_SIZE_MIB = 8;

/**
 * Writes an ext4 image labelled psyops-secret holding `files`. The files and the image are made
 * in a 0700 directory beside `out` (the image 0600 from its creation) and only the complete image
 * is renamed to `out`. The directory holding `out` must exist.
 */
export async function writeSecretImage(out: string, files: readonly SecretFile[], options: WriteSecretOptions = {}): Promise<void> {
  assertOutputFree(out, options.force ?? false);
  await writeExt4Image(out, SECRET_LABEL, IMAGE_SIZE_MIB, {
    stage: (content) => stageFiles(content, files),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}
