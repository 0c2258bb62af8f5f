/**
 * `psyops node create` as one call: a node's psynet address and certificate, its keys, its
 * secret volume and its definition in the workspace. Host side only (see node-secrets.ts).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  allocateHost,
  encodeCertificatePem,
  encodeHostPrivateKey,
  generateHostKeyPair,
  psynetFiles,
  readCa,
  resolvePlan,
  signHost,
  updateRegistry,
  type AddressPlanConfig,
} from '@psyops/psynet';
import { fileAccessError, writeFilesAtomically } from '@psyops/core';
import { NodeInputError } from './errors.js';
import { assertOutputFree } from './ext4-image.js';
import { checkNodeSecretsInput, generateNodeSecrets, writeSecretDir, writeSecretImage } from './node-secrets.js';
import { checkNodeName, normalizeMac } from './secret-volume.js';

export interface CreateNodeOptions {
  /** Lower-case letters, digits and dashes. */
  name: string;
  /** MAC address of the network card that becomes psy0. */
  mac: string;
  /** The secret volume: an ext4 image labelled psyops-secret, or a folder of its files. */
  output: { kind: 'image' | 'dir'; path: string };
  /** Replace an existing image or folder (never done otherwise). */
  force?: boolean;
  /** The workspace's minisign public key: the site's signatures are checked against it. */
  minisignPublicKeyFile: string;
  /** network.interfaces for the node (default: DHCP on psy0). */
  interfacesFile?: string;
  /** The site the node configures itself from, overriding the image's. */
  siteUrl?: string;
  /** TEST ONLY: the node adds user toor with a blank password. */
  testonlyToor?: boolean;
  /** The workspace's psynet folder (registry and CA) and address plan: the node's address is allocated and signed there as role node. */
  psynet: { dir: string; plan: AddressPlanConfig };
  /** The workspace's node definitions: `<name>.json` there gets the public parts; its config section is kept. */
  nodesDir: string;
}

export interface CreatedNode {
  name: string;
  output: CreateNodeOptions['output'];
  psynetAddress: string;
  ageRecipient: string;
  sshHostPublicKey: string;
  /** The node definition written. */
  definitionFile: string;
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw fileAccessError(error, path, what);
  }
}

/** The node's definition, or undefined when there is none yet; a broken one is refused before anything is written. */
async function readDefinition(path: string): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fileAccessError(error, path, 'node definition');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new NodeInputError(`${path} is not valid JSON (${(error as Error).message}); fix it first, node create keeps its config section`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new NodeInputError(`${path} is not a JSON object`);
  return value as Record<string, unknown>;
}

/**
 * Creates a node: allocates its psynet address (role node) and signs its Nebula certificate,
 * generates its age identity and SSH host key, writes its secret volume, and records the public
 * parts (age recipient, SSH public key, psynet address) in its definition. Everything is checked
 * before the first write: a refused call changes nothing. The private keys exist only on the volume.
 */
export async function createNode(options: CreateNodeOptions): Promise<CreatedNode> {
  const { name, output } = options;
  const force = options.force ?? false;
  checkNodeName(name);
  const mac = normalizeMac(options.mac);
  assertOutputFree(output.path, force);
  const interfaces = options.interfacesFile !== undefined ? await readText(options.interfacesFile, 'interfaces file') : undefined;
  const minisignPublicKey = await readText(options.minisignPublicKeyFile, 'workspace minisign public key');
  const input = {
    name,
    mac,
    minisignPublicKey,
    ...(interfaces !== undefined ? { interfaces } : {}),
    ...(options.siteUrl !== undefined ? { siteUrl: options.siteUrl } : {}),
  };
  checkNodeSecretsInput(input);
  const definitionFile = join(options.nodesDir, `${name}.json`);
  const definition = await readDefinition(definitionFile);

  const plan = resolvePlan(options.psynet.plan);
  const files = psynetFiles(options.psynet.dir);
  await readCa(files); // a clear CA_MISSING before the registry changes
  const { host } = await updateRegistry(files.registry, (registry) =>
    allocateHost(registry, plan, { name, role: 'node', created: new Date().toISOString().replace(/\.\d+Z$/, 'Z') }),
  );
  // The node's Nebula key is made here and goes only onto the volume: signing from its public key keeps it out of the workspace.
  const pair = generateHostKeyPair();
  const signed = await signHost(files, plan, { name, publicKey: pair.publicKey, now: Math.floor(Date.now() / 1000) });

  const secrets = await generateNodeSecrets({
    ...input,
    testonlyToor: options.testonlyToor ?? false,
    psynet: {
      hostCert: encodeCertificatePem(signed.cert),
      hostKey: encodeHostPrivateKey(pair.privateKey),
      caCert: await readText(files.caCert, 'psynet CA certificate'),
    },
  });
  if (output.kind === 'image') await writeSecretImage(output.path, secrets.files, { force });
  else await writeSecretDir(output.path, secrets.files, { force });

  const recorded = {
    ...definition,
    ageRecipient: secrets.ageRecipient,
    sshHostPublicKey: secrets.sshHostPublicKey,
    psynetAddress: host.ip,
    config: definition?.config ?? { version: 1 },
  };
  await writeFilesAtomically([{ path: definitionFile, data: `${JSON.stringify(recorded, null, 2)}\n`, mode: 0o644 }]);
  return { name, output, psynetAddress: host.ip, ageRecipient: secrets.ageRecipient, sshHostPublicKey: secrets.sshHostPublicKey, definitionFile };
}
