/** The workspace's psynet lighthouses and where they are reached, for the site and for `psynet config`. */
import type { Lighthouse } from '@psyops/siteapi';
import { UsageError } from './errors.js';
import type { Workspace } from './workspace.js';

export interface WorkspaceLighthouses {
  lighthouses: Lighthouse[];
  /** The UDP port each psyopsOS lighthouse (`node create --lighthouse`) listens on: its first underlay endpoint's. */
  listenPorts: Map<string, number>;
}

/**
 * Lighthouses from the psynet registry with their public addresses: the underlay endpoints a
 * psyopsOS lighthouse's definition records (`node create --lighthouse`; the first one's port is
 * what the node listens on), then those psynet.lighthouses in psyops.config.json adds (a NAT's
 * public address, say), each address once. A lighthouse with no address anywhere is an error
 * unless `allowUnaddressed` (a host's own Nebula config needs only the addresses that exist).
 */
export async function workspaceLighthouses(workspace: Workspace, { allowUnaddressed = false } = {}): Promise<WorkspaceLighthouses> {
  const [{ psynetFiles, readRegistry }, { readNodeLighthouses }] = await Promise.all([import('@psyops/psynet'), import('@psyops/nodeboot')]);
  const registry = await readRegistry(psynetFiles(workspace.place('psynet')).registry);
  // psynet.lighthouses: { "<name>": ["host:port", …] } (the psynet section of the config).
  const configured = (workspace.config.psynet as { lighthouses?: Record<string, string[]> }).lighthouses ?? {};
  const underlays = new Map<string, string[]>();
  const listenPorts = new Map<string, number>();
  for (const node of await readNodeLighthouses(workspace.place('nodes'))) {
    const role = registry.hosts.find((host) => host.name === node.name)?.role;
    if (role !== 'lighthouse') {
      const registered = role === undefined ? 'the psynet registry has no such host' : `the psynet registry has it as a ${role}`;
      throw new UsageError(`${node.definitionFile} makes ${node.name} a lighthouse, but ${registered}: fix or remove its psynet section`);
    }
    underlays.set(node.name, node.underlay);
    if (node.listenPort !== undefined) listenPorts.set(node.name, node.listenPort);
  }
  for (const name of Object.keys(configured)) {
    const role = registry.hosts.find((host) => host.name === name)?.role;
    if (role !== 'lighthouse')
      throw new UsageError(
        `psynet.lighthouses in psyops.config.json names ${name}, which ${role === undefined ? 'is not in the psynet registry' : `is a ${role}, not a lighthouse`}`,
      );
  }
  const lighthouses: Lighthouse[] = [];
  for (const host of registry.hosts.filter((entry) => entry.role === 'lighthouse')) {
    const publicAddresses = [...new Set([...(underlays.get(host.name) ?? []), ...(configured[host.name] ?? [])])];
    if (publicAddresses.length > 0) lighthouses.push({ name: host.name, overlayIp: host.ip, publicAddresses });
    else if (!allowUnaddressed)
      throw new UsageError(
        `lighthouse ${host.name} has no public address: add it to psynet.lighthouses in psyops.config.json, or create it with psyops node create ${host.name} --lighthouse HOST:PORT`,
      );
  }
  return { lighthouses, listenPorts };
}
