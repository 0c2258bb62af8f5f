import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileAccessError } from '@psyops/core';
import { UsageError } from '../errors.js';
import { InventoryError, NodeAddressError } from './errors.js';

/** telepathy's port on every node (the psynet firewall lets it in). */
export const TELEPATHY_PORT = 7453;
export const SSH_PORT = 22;

/** Where one node is reached: SSH as root, and telepathy's HTTP status. */
export interface FleetNode {
  name: string;
  host: string;
  sshPort: number;
  telepathyPort: number;
  /**
   * `ssh`: telepathy is asked on the node itself, through SSH (`wget` of 127.0.0.1), for a node
   * whose psynet address the operator cannot reach (telepathy listens on psynet and 127.0.0.1 only).
   */
  telepathyVia?: 'ssh';
}

export interface InventoryEntry {
  host: string;
  sshPort?: number;
  telepathyPort?: number;
  telepathyVia?: 'ssh';
}

const HOST = /^[A-Za-z0-9][A-Za-z0-9.:-]{0,252}$/;
const isPort = (value: unknown): value is number => Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 65535;

/**
 * Parses an inventory: `{"nodes":{"<name>":{"host":"127.0.0.1","sshPort":2222,"telepathyPort":17453}}}`
 * (ports optional: 22 and 7453; `"telepathyVia":"ssh"` asks telepathy through SSH). Any other
 * shape is refused with the first problem.
 */
export function parseInventory(text: string, source: string): Map<string, InventoryEntry> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new InventoryError(`${source} is not valid JSON (${(error as Error).message})`);
  }
  const nodes = (parsed as { nodes?: unknown } | null)?.nodes;
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || typeof nodes !== 'object' || nodes === null || Array.isArray(nodes)) {
    throw new InventoryError(`${source} must be {"nodes":{"<name>":{"host":"…","sshPort":22,"telepathyPort":7453}}}`);
  }
  const extra = Object.keys(parsed).filter((key) => key !== 'nodes');
  if (extra.length > 0) throw new InventoryError(`${source}: unknown field "${extra[0]}" (only "nodes")`);
  const entries = new Map<string, InventoryEntry>();
  for (const [name, value] of Object.entries(nodes as Record<string, unknown>)) {
    const where = `${source}: nodes.${name}`;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InventoryError(`${where} must be an object with "host"`);
    const entry = value as Record<string, unknown>;
    const unknown = Object.keys(entry).find((key) => !['host', 'sshPort', 'telepathyPort', 'telepathyVia'].includes(key));
    if (unknown !== undefined) throw new InventoryError(`${where}: unknown field "${unknown}" (host, sshPort, telepathyPort, telepathyVia)`);
    if (entry.telepathyVia !== undefined && entry.telepathyVia !== 'ssh' && entry.telepathyVia !== 'http')
      throw new InventoryError(`${where}.telepathyVia must be "http" (the default) or "ssh"`);
    if (typeof entry.host !== 'string' || !HOST.test(entry.host)) throw new InventoryError(`${where}.host must be a host name or address`);
    for (const port of ['sshPort', 'telepathyPort'] as const) {
      if (entry[port] !== undefined && !isPort(entry[port])) throw new InventoryError(`${where}.${port} must be a port number from 1 to 65535`);
    }
    entries.set(name, {
      host: entry.host,
      ...(entry.sshPort !== undefined ? { sshPort: entry.sshPort as number } : {}),
      ...(entry.telepathyPort !== undefined ? { telepathyPort: entry.telepathyPort as number } : {}),
      ...(entry.telepathyVia === 'ssh' ? { telepathyVia: 'ssh' as const } : {}),
    });
  }
  return entries;
}

export async function readInventory(path: string): Promise<Map<string, InventoryEntry>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw fileAccessError(error, path, 'inventory');
  }
  return parseInventory(text, path);
}

/** Each workspace node's recorded psynet address (undefined where none is recorded), by name. */
export async function workspaceNodeAddresses(nodesDir: string): Promise<Map<string, string | undefined>> {
  let names: string[];
  try {
    names = (await readdir(nodesDir)).filter((name) => name.endsWith('.json') && !name.startsWith('.'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw fileAccessError(error, nodesDir, 'nodes folder');
  }
  const nodes = new Map<string, string | undefined>();
  for (const file of names.sort()) {
    const path = join(nodesDir, file);
    let address: unknown;
    try {
      address = (JSON.parse(await readFile(path, 'utf8')) as { psynetAddress?: unknown }).psynetAddress;
    } catch (error) {
      if (error instanceof SyntaxError) throw new NodeAddressError(`${path} is not valid JSON (${error.message})`);
      throw fileAccessError(error, path, 'node definition');
    }
    nodes.set(file.slice(0, -'.json'.length), typeof address === 'string' ? address : undefined);
  }
  return nodes;
}

/**
 * The nodes a fleet command works on, in the order asked (default: every known node, sorted).
 * A node is known from the workspace (its psynet address, recorded by `node create`) or the
 * inventory, which wins: a name neither knows is a usage error.
 */
export function resolveFleetNodes(
  asked: readonly string[],
  workspace: ReadonlyMap<string, string | undefined>,
  inventory: ReadonlyMap<string, InventoryEntry> = new Map(),
): FleetNode[] {
  const known = [...new Set([...workspace.keys(), ...inventory.keys()])].sort();
  const names = asked.length > 0 ? asked : known;
  const seen = new Set<string>();
  return names.map((name) => {
    if (seen.has(name)) throw new UsageError(`node ${name} is named twice`);
    seen.add(name);
    const entry = inventory.get(name);
    if (entry) {
      const via = entry.telepathyVia !== undefined ? { telepathyVia: entry.telepathyVia } : {};
      return { name, host: entry.host, sshPort: entry.sshPort ?? SSH_PORT, telepathyPort: entry.telepathyPort ?? TELEPATHY_PORT, ...via };
    }
    if (!workspace.has(name)) {
      throw new UsageError(
        `no node ${name} in the workspace (nodes/${name}.json)${inventory.size > 0 ? ' or the inventory' : ''}; known: ${known.join(', ') || 'none'}`,
      );
    }
    const address = workspace.get(name);
    if (address === undefined) {
      throw new NodeAddressError(`nodes/${name}.json records no psynetAddress (psyops node create records it); give its address with --inventory FILE`);
    }
    return { name, host: address, sshPort: SSH_PORT, telepathyPort: TELEPATHY_PORT };
  });
}
