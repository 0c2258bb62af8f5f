/**
 * `psyops node create` as one call: a node's psynet address and certificate, its keys, its
 * secret volume and its definition in the workspace. Host side only (see node-secrets.ts).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, unlink } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import { join } from 'node:path';
import {
  allocateHost,
  encodeCertificatePem,
  encodeHostPrivateKey,
  generateHostKeyPair,
  HostConflictError,
  psynetFiles,
  readCa,
  readRegistry,
  resolvePlan,
  signHost,
  updateRegistry,
  type AddressPlanConfig,
  type HostEntry,
} from '@psyops/psynet';
import { PsyopsError, fileAccessError, writeFilesAtomically, readTextIfExists } from '@psyops/core';
import { NODE_NAME } from '@psyops/siteapi/names';
import { NodeDefinitionError, NodeInputError } from './errors.js';
import { endpointPort } from './nebula.js';
import { assertOutputFree, requireMkfs, throwIfInterrupted, VolumeInterruptedError } from './ext4-image.js';
import { checkNodeSecretsInput, generateNodeSecrets, withPsynetFiles, writeSecretDir, writeSecretImage } from './node-secrets.js';
import { checkNodeName, normalizeMac } from './secret-volume.js';

/** The node exists already (its definition records keys, or the psynet registry has its name) and `rekey` was not asked for. */
export class NodeExistsError extends PsyopsError {
  override readonly code = 'NODE_EXISTS';
}

export interface CreateNodeOptions {
  /** Lower-case letters, digits and dashes. */
  name: string;
  /** MAC address of the network card that becomes psy0. */
  mac: string;
  /** The secret volume: an ext4 image labelled psyops-secret, or a folder of its files. Its directory must exist. */
  output: { kind: 'image' | 'dir'; path: string };
  /** Replace an existing image or folder at `output.path` (never done otherwise). It never replaces a node's keys: that is `rekey`. */
  force?: boolean;
  /**
   * Replace the keys and certificate of a node that exists already (its definition records keys,
   * or the psynet registry has its name); without it such a node is refused (NODE_EXISTS). Its
   * psynet address is kept; its old volume no longer matches it.
   */
  rekey?: boolean;
  /** The workspace's minisign public key: the site's signatures are checked against it. */
  minisignPublicKeyFile: string;
  /** network.interfaces for the node (default: DHCP on psy0). */
  interfacesFile?: string;
  /** The site the node configures itself from, overriding the image's. */
  siteUrl?: string;
  /** TEST ONLY: the node adds user toor with a blank password. */
  testonlyToor?: boolean;
  /**
   * Make the node a psynet lighthouse: its address comes from the lighthouse pool, its certificate
   * carries the lighthouses group, and its definition records `underlay`, the fixed `HOST:PORT`
   * endpoints (IPv4, `[IPv6]` or a host name; one port) where the other hosts reach it. Without it
   * a new node is a plain node, and a rekeyed lighthouse stays one with its recorded endpoints.
   */
  lighthouse?: { underlay: readonly string[] };
  /** The workspace's psynet folder (registry and CA) and address plan: the node's address is allocated and signed there (role node, or lighthouse). */
  psynet: { dir: string; plan: AddressPlanConfig };
  /** The workspace's node definitions: `<name>.json` there gets the public parts; its config section is kept. */
  nodesDir: string;
  /**
   * Gives up until the secret volume is in place (e.g. on Ctrl-C): mkfs.ext4 is killed, every
   * temporary file and folder is removed, the allocation and certificate are taken back and the
   * definition is not touched; the call rejects with code INTERRUPTED. Once the volume is in
   * place the call completes.
   */
  signal?: AbortSignal;
}

/** What a node had before `rekey` replaced it; a field is absent when nothing was recorded. */
export interface ReplacedNodeKeys {
  ageRecipient?: string;
  sshHostPublicKey?: string;
  sshHostKeyFingerprint?: string;
  /** SHA-256 of the old psynet certificate, as the registry recorded it. */
  certificateFingerprint?: string;
  /** When the old certificate expires (RFC 3339): Nebula accepts it until then. */
  certificateNotAfter?: string;
  psynetAddress?: string;
}

export interface CreatedNode {
  name: string;
  output: CreateNodeOptions['output'];
  /** Its psynet role: `lighthouse` when asked, or kept from the registry by a rekey. */
  role: NodeRole;
  psynetAddress: string;
  /** A lighthouse's underlay endpoints as its definition records them (empty: psyops.config.json's psynet.lighthouses gives them). */
  underlay?: string[];
  ageRecipient: string;
  sshHostPublicKey: string;
  /** `SHA256:…`, as `ssh-keygen -l` prints it. */
  sshHostKeyFingerprint: string;
  /** SHA-256 of the psynet certificate (hex), as `nebula-cert print` shows it and the registry records it. */
  certificateFingerprint: string;
  /** The node definition written. */
  definitionFile: string;
  /** Set when `rekey` replaced an existing node: what it had before. */
  replaced?: ReplacedNodeKeys;
}

/** The psynet roles a psyopsOS node can have. */
export type NodeRole = Extract<HostEntry['role'], 'node' | 'lighthouse'>;

/**
 * What a node definition records of a lighthouse (`nodes/<name>.json`):
 * `"psynet": { "role": "lighthouse", "underlay": ["192.168.77.1:4242"] }`. Plain nodes have no
 * `psynet` field.
 */
interface LighthouseRecord {
  role: 'lighthouse';
  /** The lighthouse's own fixed `HOST:PORT` endpoints on the underlay network; it listens on their port. */
  underlay: string[];
}

const HOST_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** Why `endpoint` is not `HOST:PORT` (an IPv4 address, a bracketed IPv6 address or a host name; a port 1–65535), or undefined. */
function endpointProblem(endpoint: string): string | undefined {
  const colon = endpoint.lastIndexOf(':');
  if (colon < 0 || endpoint.endsWith(']')) return 'no port';
  const host = endpoint.slice(0, colon);
  const port = endpoint.slice(colon + 1);
  if (!/^[1-9]\d{0,4}$/.test(port) || Number(port) > 65535) return 'the port must be 1-65535';
  if (host.startsWith('[') && host.endsWith(']')) return isIPv6(host.slice(1, -1)) ? undefined : `${host.slice(1, -1)} is not an IPv6 address`;
  if (host.includes(':')) return `an IPv6 address goes in brackets: [${isIPv6(host) ? host : '2001:db8::1'}]:${port}`;
  if (/^[\d.]+$/.test(host)) return isIPv4(host) ? undefined : `${host} is not an IPv4 address`;
  if (host.length > 253 || !host.split('.').every((label) => HOST_LABEL.test(label)))
    return `"${host}" is not a host name, an IPv4 address or a bracketed IPv6 address`;
  return undefined;
}

/**
 * A lighthouse's underlay endpoints, checked: at least one, each `HOST:PORT`, none twice, all on
 * one port (Nebula listens on one). Throws `make(message)` for the first problem.
 */
function checkUnderlay(endpoints: readonly string[], make: (message: string) => Error): string[] {
  if (endpoints.length === 0) throw make('a lighthouse needs at least one underlay endpoint HOST:PORT, e.g. 192.168.77.1:4242');
  for (const [index, endpoint] of endpoints.entries()) {
    const problem = endpointProblem(endpoint);
    if (problem !== undefined) throw make(`lighthouse endpoint "${endpoint}" is not HOST:PORT (${problem})`);
    if (endpoints.indexOf(endpoint) !== index) throw make(`lighthouse endpoint "${endpoint}" is given twice`);
    const first = endpoints[0]!;
    if (endpoint.slice(endpoint.lastIndexOf(':')) !== first.slice(first.lastIndexOf(':')))
      throw make(`lighthouse endpoints "${first}" and "${endpoint}" have different ports: a lighthouse listens on one port`);
  }
  return [...endpoints];
}

/** The lighthouse record of a parsed definition, undefined for a plain node; `make` builds the error for a malformed one. */
function lighthouseRecord(definition: Record<string, unknown> | undefined, file: string, make: (message: string) => Error): LighthouseRecord | undefined {
  const psynet = definition?.psynet;
  if (psynet === undefined) return undefined;
  const { role, underlay } = (typeof psynet === 'object' && psynet !== null ? psynet : {}) as Record<string, unknown>;
  if (role !== 'lighthouse' || !Array.isArray(underlay) || !underlay.every((endpoint) => typeof endpoint === 'string'))
    throw make(`${file}: psynet must be {"role": "lighthouse", "underlay": ["HOST:PORT", …]}`);
  // An empty list is what a rekeyed registry lighthouse records: psyops.config.json gives its endpoints.
  if (underlay.length === 0) return { role, underlay: [] };
  return { role, underlay: checkUnderlay(underlay, (message) => make(`${file}: psynet.underlay: ${message}`)) };
}

/** A lighthouse among the workspace's node definitions. */
export interface NodeLighthouse {
  name: string;
  definitionFile: string;
  underlay: string[];
  /** The UDP port it listens on: its first endpoint's (none when it records no endpoint). */
  listenPort?: number;
}

/**
 * The lighthouses among the node definitions in `nodesDir` (those whose `psynet.role` is
 * lighthouse), sorted by name; a definition that is not JSON, or whose `psynet` is malformed, is
 * refused (`BAD_NODE_DEFINITION`). What `site build` publishes beside the registry's addresses.
 */
export async function readNodeLighthouses(nodesDir: string): Promise<NodeLighthouse[]> {
  let files: string[];
  try {
    files = await readdir(nodesDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fileAccessError(error, nodesDir, 'nodes folder');
  }
  const names = files
    .filter((file) => file.endsWith('.json') && NODE_NAME.test(file.slice(0, -'.json'.length)))
    .map((file) => file.slice(0, -'.json'.length))
    .sort();
  const lighthouses: NodeLighthouse[] = [];
  for (const name of names) {
    const definitionFile = join(nodesDir, `${name}.json`);
    const text = await readText(definitionFile, 'node definition');
    let definition: unknown;
    try {
      definition = JSON.parse(text);
    } catch (error) {
      throw new NodeDefinitionError(`${definitionFile} is not valid JSON (${(error as Error).message})`);
    }
    if (typeof definition !== 'object' || definition === null || Array.isArray(definition))
      throw new NodeDefinitionError(`${definitionFile} is not a JSON object`);
    const record = lighthouseRecord(definition as Record<string, unknown>, definitionFile, (message) => new NodeDefinitionError(message));
    if (!record) continue;
    const listenPort = record.underlay[0] === undefined ? undefined : endpointPort(record.underlay[0]);
    lighthouses.push({ name, definitionFile, underlay: record.underlay, ...(listenPort !== undefined ? { listenPort } : {}) });
  }
  return lighthouses;
}

/** The OpenSSH fingerprint (`SHA256:…`, unpadded base64) of a public key line `type base64 [comment]`. */
export function sshKeyFingerprint(publicKeyLine: string): string {
  const blob = publicKeyLine.trim().split(/\s+/)[1] ?? '';
  return `SHA256:${createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64').replace(/=+$/, '')}`;
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
  const text = await readTextIfExists(path, 'node definition');
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new NodeInputError(`${path} is not valid JSON (${(error as Error).message}); fix it first, node create keeps its config section`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new NodeInputError(`${path} is not a JSON object`);
  return value as Record<string, unknown>;
}

const RECORDED_KEYS = ['ageRecipient', 'sshHostPublicKey', 'psynetAddress'] as const;
const recordedString = (definition: Record<string, unknown> | undefined, key: (typeof RECORDED_KEYS)[number]) =>
  typeof definition?.[key] === 'string' ? (definition[key] as string) : undefined;

/** Refuses a node that exists already unless rekeying; a name the registry holds for another role than `role` is always refused. */
function checkExisting(options: {
  name: string;
  role: NodeRole;
  definition: Record<string, unknown> | undefined;
  definitionFile: string;
  entry: HostEntry | undefined;
  rekey: boolean;
  output: CreateNodeOptions['output'];
  force: boolean;
}): void {
  const { name, role, definition, entry } = options;
  if (entry !== undefined && entry.role !== role) {
    throw new HostConflictError(`${name} is in the psynet registry as a ${entry.role} (${entry.ip}), not a ${role}; choose another name or release it first`);
  }
  if (options.rekey) return;
  const reasons: string[] = [];
  if (RECORDED_KEYS.some((key) => definition?.[key] !== undefined)) reasons.push(`${options.definitionFile} records its keys`);
  if (entry !== undefined) reasons.push(`the psynet registry has it at ${entry.ip}`);
  if (reasons.length === 0) return;
  const alsoOutput = !options.force && existsSync(options.output.path) ? `, and -f to replace ${options.output.path}` : '';
  throw new NodeExistsError(
    `node ${name} already exists (${reasons.join('; ')}); creating it again would replace its keys and certificate, and its current secret volume could no longer decrypt its config: give --rekey to do that${alsoOutput}`,
  );
}

/**
 * Creates a node: allocates its psynet address (role node, or lighthouse) and signs its Nebula certificate,
 * generates its age identity and SSH host key, writes its secret volume, and records the public
 * parts (age recipient, SSH public key, psynet address) in its definition. Every input (name,
 * MAC, output path, workspace keys, an existing node) is checked before the registry is touched:
 * a refused call changes nothing, and a volume that cannot be written takes the allocation and
 * certificate back, as does an abort by `options.signal`. The private keys exist only on the
 * volume, which is never readable by others, not even while it is written (a 0700 temporary
 * directory beside the output, the image 0600 from its creation).
 */
export async function createNode(options: CreateNodeOptions): Promise<CreatedNode> {
  const { name, output } = options;
  const force = options.force ?? false;
  const rekey = options.rekey ?? false;
  checkNodeName(name);
  const mac = normalizeMac(options.mac);
  const askedUnderlay = options.lighthouse ? checkUnderlay(options.lighthouse.underlay, (message) => new NodeInputError(message)) : undefined;
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
  const recordedLighthouse = lighthouseRecord(definition, definitionFile, (message) => new NodeInputError(`${message}; fix it first`));

  const plan = resolvePlan(options.psynet.plan);
  const files = psynetFiles(options.psynet.dir);
  await readCa(files); // a clear CA_MISSING before the registry changes
  const caCert = await readText(files.caCert, 'psynet CA certificate');
  const registryExisted = existsSync(files.registry);
  const entry = (await readRegistry(files.registry)).hosts.find((host) => host.name === name);
  // A lighthouse when asked; one already (by the registry, else its definition) stays one.
  const role: NodeRole = askedUnderlay || (entry?.role ?? recordedLighthouse?.role) === 'lighthouse' ? 'lighthouse' : 'node';
  const underlay = askedUnderlay ?? recordedLighthouse?.underlay ?? [];
  checkExisting({ name, role, definition, definitionFile, entry, rekey, output, force });
  assertOutputFree(output.path, force, output.kind === 'image' ? 'file' : 'dir');
  if (output.kind === 'image') requireMkfs();

  // Keys first: nothing below is written until the volume is.
  const { signal } = options;
  const secrets = await generateNodeSecrets({ ...input, testonlyToor: options.testonlyToor ?? false });
  throwIfInterrupted(signal, `node ${name}`);
  // The node's Nebula key is made here and goes only onto the volume: signing from its public key keeps it out of the workspace.
  const pair = generateHostKeyPair();
  const previousHostCert = await readTextIfExists(files.hostCert(name), 'psynet host certificate');
  const previousHostKey = await readTextIfExists(files.hostKey(name), 'psynet host key');

  let prior: { entry: HostEntry | undefined; released: boolean } = { entry: undefined, released: false };
  const { host } = await updateRegistry(files.registry, (registry) => {
    const current = registry.hosts.find((h) => h.name === name);
    // Checked again under the lock: another `node create` of this name may have run since.
    checkExisting({ name, role, definition, definitionFile, entry: current, rekey, output, force: true });
    const releasedBefore = new Set(registry.released);
    const result = allocateHost(registry, plan, { name, role, created: new Date().toISOString().replace(/\.\d+Z$/, 'Z') });
    prior = { entry: current && structuredClone(current), released: result.allocated && releasedBefore.has(result.host.ip) };
    return result;
  });

  let certificateFingerprint: string;
  try {
    const signed = await signHost(files, plan, { name, publicKey: pair.publicKey, now: Math.floor(Date.now() / 1000) });
    certificateFingerprint = signed.fingerprint;
    const volume = withPsynetFiles(secrets.files, {
      hostCert: encodeCertificatePem(signed.cert),
      hostKey: encodeHostPrivateKey(pair.privateKey),
      caCert,
    });
    throwIfInterrupted(signal, `node ${name}`);
    const write = { force, ...(signal ? { signal } : {}) };
    if (output.kind === 'image') await writeSecretImage(output.path, volume, write);
    else await writeSecretDir(output.path, volume, write);
  } catch (error) {
    await takeBack({ name, files, ip: host.ip, prior, registryExisted, previousHostCert, previousHostKey }).catch(() => undefined);
    // However the volume failed (a terminal's Ctrl-C reaches mkfs.ext4 too), an abort is reported as one.
    if (signal?.aborted && !(error instanceof VolumeInterruptedError)) throwIfInterrupted(signal, `node ${name}`, error);
    throw error;
  }
  // The volume is in place: from here the call completes, abort or not.

  // A plain node has no psynet section; one written by hand is dropped, as the registry says what the node is.
  const kept = Object.fromEntries(Object.entries(definition ?? {}).filter(([key]) => role === 'lighthouse' || key !== 'psynet'));
  const recorded = {
    ...kept,
    ageRecipient: secrets.ageRecipient,
    sshHostPublicKey: secrets.sshHostPublicKey,
    psynetAddress: host.ip,
    ...(role === 'lighthouse' ? { psynet: { role, underlay } satisfies LighthouseRecord } : {}),
    config: definition?.config ?? { version: 1 },
  };
  await writeFilesAtomically([{ path: definitionFile, data: `${JSON.stringify(recorded, null, 2)}\n`, mode: 0o644 }]);

  const oldSsh = recordedString(definition, 'sshHostPublicKey');
  const oldAge = recordedString(definition, 'ageRecipient');
  const oldAddress = prior.entry?.ip ?? recordedString(definition, 'psynetAddress');
  const existed = prior.entry !== undefined || oldSsh !== undefined || oldAge !== undefined || oldAddress !== undefined;
  const replaced: ReplacedNodeKeys | undefined = existed
    ? {
        ...(oldAge !== undefined ? { ageRecipient: oldAge } : {}),
        ...(oldSsh !== undefined ? { sshHostPublicKey: oldSsh, sshHostKeyFingerprint: sshKeyFingerprint(oldSsh) } : {}),
        ...(prior.entry?.certificate
          ? { certificateFingerprint: prior.entry.certificate.fingerprint, certificateNotAfter: prior.entry.certificate.notAfter }
          : {}),
        ...(oldAddress !== undefined ? { psynetAddress: oldAddress } : {}),
      }
    : undefined;
  return {
    name,
    output,
    role,
    psynetAddress: host.ip,
    ...(role === 'lighthouse' ? { underlay } : {}),
    ageRecipient: secrets.ageRecipient,
    sshHostPublicKey: secrets.sshHostPublicKey,
    sshHostKeyFingerprint: sshKeyFingerprint(secrets.sshHostPublicKey),
    certificateFingerprint,
    definitionFile,
    ...(replaced ? { replaced } : {}),
  };
}

/**
 * The volume could not be written: the registry entry goes back to what it was (a new one is
 * removed, its address back among the released ones if it came from there), and so do the
 * host's certificate and key files in psynet/hosts, so that trying again is not a --rekey.
 */
async function takeBack(state: {
  name: string;
  files: ReturnType<typeof psynetFiles>;
  ip: string;
  prior: { entry: HostEntry | undefined; released: boolean };
  registryExisted: boolean;
  previousHostCert: string | undefined;
  previousHostKey: string | undefined;
}): Promise<void> {
  const { name, files, ip, prior } = state;
  const empty = await updateRegistry(files.registry, (registry) => {
    const index = registry.hosts.findIndex((host) => host.name === name);
    if (prior.entry !== undefined) {
      if (index >= 0) registry.hosts[index] = prior.entry;
      else registry.hosts.push(prior.entry);
    } else if (index >= 0 && registry.hosts[index]!.ip === ip) {
      registry.hosts.splice(index, 1);
      if (prior.released) registry.released.push(ip);
    }
    return registry.hosts.length === 0 && registry.released.length === 0;
  });
  if (empty && !state.registryExisted) await unlink(files.registry).catch(() => undefined);
  const restore: { path: string; data: string; mode: number }[] = [];
  if (state.previousHostCert !== undefined) restore.push({ path: files.hostCert(name), data: state.previousHostCert, mode: 0o644 });
  else await unlink(files.hostCert(name)).catch(() => undefined);
  if (state.previousHostKey !== undefined) restore.push({ path: files.hostKey(name), data: state.previousHostKey, mode: 0o600 });
  if (restore.length > 0) await writeFilesAtomically(restore);
}
