import { nebulaCommonSettings } from '@psyops/psynet/nebula-defaults';
import type { Lighthouse, NodeConfig } from '@psyops/siteapi/schemas';
import { NodeConfigRejectedError } from './errors.js';

export interface NodeNebulaConfigOptions {
  /** Paths of the PKI files on the node. */
  pki: { ca: string; cert: string; key: string };
  lighthouses: readonly Lighthouse[];
  /** This node's name: when the lighthouse list has an entry of that name, the node is that lighthouse. */
  self?: string;
  /** Extra inbound rules from the node config. */
  firewall?: NodeConfig['firewall'];
}

/** telepathy's port (psyopsOS-base): every node serves its read-only status there, to psynet hosts. */
export const TELEPATHY_PORT = 7453;

/** The port of a `host:port` endpoint, or undefined when it ends in no port 1–65535. */
export function endpointPort(endpoint: string): number | undefined {
  const match = /:([1-9]\d{0,4})$/.exec(endpoint);
  const port = match ? Number(match[1]) : 0;
  return port >= 1 && port <= 65535 ? port : undefined;
}

/** This node's own entry in the site's lighthouse list, when it is a lighthouse. */
export function ownLighthouse(lighthouses: readonly Lighthouse[], self: string | undefined): Lighthouse | undefined {
  return self === undefined ? undefined : lighthouses.find((lighthouse) => lighthouse.name === self);
}

/** The UDP port a lighthouse listens on: that of its first endpoint (the others are the same host under other addresses). */
export function lighthouseListenPort(lighthouse: Lighthouse): number {
  const first = lighthouse.publicAddresses[0]!;
  const port = endpointPort(first);
  if (port === undefined)
    throw new NodeConfigRejectedError(`the site lists this node (${lighthouse.name}) as a lighthouse at "${first}", which has no port to listen on`);
  return port;
}

/**
 * The Nebula config of a psyopsOS node: psynet's common settings (the same as `psyops psynet
 * config`) plus telepathy's port for every psynet host (telepathy listens only on psynet and
 * 127.0.0.1) and the node config's inbound rules. A node the lighthouse list names (`self`) is that
 * lighthouse: it answers the others, lists no lighthouse itself and listens on the port of its
 * first endpoint; every other node listens on a random port. Written as JSON, which is YAML too:
 * the bundle needs no YAML library.
 */
export function nodeNebulaConfig(options: NodeNebulaConfigOptions): string {
  const own = ownLighthouse(options.lighthouses, options.self);
  const listenPort = own ? lighthouseListenPort(own) : 0;
  const staticHostMap: Record<string, string[]> = {};
  for (const lighthouse of [...options.lighthouses].sort((a, b) => (a.name < b.name ? -1 : 1)))
    if (lighthouse !== own) staticHostMap[lighthouse.overlayIp] = [...lighthouse.publicAddresses];
  const configured = (options.firewall ?? []).map((rule) => {
    const { port, proto, host, groups, cidr } = rule;
    const selectors = { ...(host !== undefined ? { host } : {}), ...(groups !== undefined ? { groups } : {}), ...(cidr !== undefined ? { cidr } : {}) };
    return { port: String(port), proto, ...(Object.keys(selectors).length > 0 ? selectors : { host: 'any' }) };
  });
  // host any: whoever holds a certificate of the psynet CA.
  const extra = [{ port: String(TELEPATHY_PORT), proto: 'tcp', host: 'any' }, ...configured];
  // A lighthouse reached at an IPv6 address needs the dual-stack socket; 0.0.0.0 is IPv4 only.
  const dualStack = own?.publicAddresses.some((address) => address.startsWith('[')) ?? false;
  const config = {
    pki: options.pki,
    static_host_map: staticHostMap,
    // A lighthouse must not list lighthouses (nebula warns); everyone else lists all of them.
    lighthouse: { am_lighthouse: own !== undefined, interval: 60, hosts: own ? [] : Object.keys(staticHostMap) },
    listen: { host: dualStack ? '[::]' : '0.0.0.0', port: listenPort },
    ...nebulaCommonSettings(extra),
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}
