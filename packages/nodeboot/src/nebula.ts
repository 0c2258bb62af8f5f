import { nebulaCommonSettings } from '@psyops/psynet/nebula-defaults';
import type { Lighthouse, NodeConfig } from '@psyops/siteapi/schemas';

export interface NodeNebulaConfigOptions {
  /** Paths of the PKI files on the node. */
  pki: { ca: string; cert: string; key: string };
  lighthouses: readonly Lighthouse[];
  /** Extra inbound rules from the node config. */
  firewall?: NodeConfig['firewall'];
}

/**
 * The Nebula config of a psyopsOS node: psynet's common settings (the same as `psyops psynet
 * config`) plus the node config's inbound rules. Written as JSON, which is YAML too: the bundle
 * needs no YAML library.
 */
export function nodeNebulaConfig(options: NodeNebulaConfigOptions): string {
  const staticHostMap: Record<string, string[]> = {};
  for (const lighthouse of [...options.lighthouses].sort((a, b) => (a.name < b.name ? -1 : 1)))
    staticHostMap[lighthouse.overlayIp] = [...lighthouse.publicAddresses];
  const extra = (options.firewall ?? []).map((rule) => {
    const { port, proto, host, groups, cidr } = rule;
    const selectors = { ...(host !== undefined ? { host } : {}), ...(groups !== undefined ? { groups } : {}), ...(cidr !== undefined ? { cidr } : {}) };
    return { port: String(port), proto, ...(Object.keys(selectors).length > 0 ? selectors : { host: 'any' }) };
  });
  const config = {
    pki: options.pki,
    static_host_map: staticHostMap,
    lighthouse: { am_lighthouse: false, interval: 60, hosts: Object.keys(staticHostMap) },
    listen: { host: '0.0.0.0', port: 0 },
    ...nebulaCommonSettings(extra),
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}
