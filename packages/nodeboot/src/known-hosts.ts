/** OpenSSH known_hosts entries from the SSH host keys `node create` records, so a first login trusts nothing unverified. */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileAccessError } from '@psyops/core';
import { NODE_NAME } from '@psyops/siteapi/names';
import { NodeDefinitionError, NodeNotFoundError } from './errors.js';

export interface KnownHost {
  name: string;
  /** The node's psynet address, when recorded. */
  address?: string;
  /** `ssh-ed25519 AAAA…`, without the comment. */
  key: string;
}

const SSH_PUBLIC_KEY = /^(ssh-ed25519) ([A-Za-z0-9+/]+={0,2})(?: .*)?$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** The SSH host key a node's definition records; undefined when it records none and the node was not asked for by name. */
async function readKnownHost(nodesDir: string, name: string, explicit: boolean): Promise<KnownHost | undefined> {
  const file = join(nodesDir, `${name}.json`);
  if (!NODE_NAME.test(name)) throw new NodeNotFoundError(`"${name}" is not a node name (lower-case letters, digits and dashes)`);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new NodeNotFoundError(`no node ${name} in this workspace (${file} does not exist)`);
    throw fileAccessError(error, file, 'node definition');
  }
  let definition: { sshHostPublicKey?: unknown; psynetAddress?: unknown };
  try {
    definition = JSON.parse(text);
  } catch (error) {
    throw new NodeDefinitionError(`${file} is not valid JSON (${(error as Error).message})`);
  }
  if (typeof definition !== 'object' || definition === null) throw new NodeDefinitionError(`${file} is not a JSON object`);
  if (definition.sshHostPublicKey === undefined) {
    if (!explicit) return undefined;
    throw new NodeDefinitionError(`${file} records no SSH host key (psyops node create ${name} records it)`);
  }
  const match = typeof definition.sshHostPublicKey === 'string' ? SSH_PUBLIC_KEY.exec(definition.sshHostPublicKey.trim()) : null;
  if (!match) throw new NodeDefinitionError(`${file}: sshHostPublicKey is not an OpenSSH ed25519 public key line`);
  const address = definition.psynetAddress;
  if (address !== undefined && (typeof address !== 'string' || !IPV4.test(address)))
    throw new NodeDefinitionError(`${file}: psynetAddress is not an IPv4 address`);
  return { name, ...(address !== undefined ? { address } : {}), key: `${match[1]} ${match[2]}` };
}

/**
 * The known hosts of the nodes named (each must have a definition recording its key), or of every
 * node in `nodesDir` that records one, sorted by name.
 */
export async function readKnownHosts(nodesDir: string, names: readonly string[] = []): Promise<KnownHost[]> {
  if (names.length > 0) return Promise.all([...new Set(names)].map(async (name) => (await readKnownHost(nodesDir, name, true))!));
  let files: string[];
  try {
    files = await readdir(nodesDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw fileAccessError(error, nodesDir, 'nodes folder');
    files = [];
  }
  const all = files
    .filter((file) => file.endsWith('.json') && NODE_NAME.test(file.slice(0, -'.json'.length)))
    .map((file) => file.slice(0, -'.json'.length))
    .sort();
  const hosts = await Promise.all(all.map((name) => readKnownHost(nodesDir, name, false)));
  return hosts.filter((host) => host !== undefined);
}

/** One known_hosts line: the name, `name.<domain>` and the psynet address, then the key. */
export function knownHostsLine(host: KnownHost, domain: string): string {
  return `${[host.name, `${host.name}.${domain}`, ...(host.address ? [host.address] : [])].join(',')} ${host.key}`;
}
