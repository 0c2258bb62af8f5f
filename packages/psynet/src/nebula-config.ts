import { stringify } from 'yaml';
import { NebulaConfigError } from './errors.js';
import { nebulaCommonSettings } from './nebula-defaults.js';
import type { HostEntry, Registry } from './registry.js';

/** Inline PEM text (self-contained file) or paths on the node. */
export type PkiSource = { inline: { ca: string; cert: string; key: string } } | { paths: { ca: string; cert: string; key: string } };

export interface NebulaConfigOptions {
  host: HostEntry;
  registry: Registry;
  /** Public "address:port" endpoints of each lighthouse, by host name. */
  lighthouseEndpoints: Record<string, string[]>;
  pki: PkiSource;
  /** UDP port lighthouses listen on; other hosts use a random port (0). */
  lighthousePort: number;
}

const ENDPOINT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/**
 * The Nebula config.yaml of one host: pki, static_host_map and lighthouse hosts from the
 * lighthouses' public endpoints, am_lighthouse for lighthouses, punchy, tun and the default
 * firewall (outbound anything; inbound ICMP from anyone and anything from group `clients`).
 */
export function nebulaConfig(options: NebulaConfigOptions): string {
  const { host, registry } = options;
  const isLighthouse = host.role === 'lighthouse';
  const staticHostMap: Record<string, string[]> = {};
  for (const [name, endpoints] of Object.entries(options.lighthouseEndpoints).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const lighthouse = registry.hosts.find((entry) => entry.name === name);
    if (!lighthouse) throw new NebulaConfigError(`psynet.lighthouses names ${name}, which is not in the psynet registry`);
    if (lighthouse.role !== 'lighthouse') throw new NebulaConfigError(`psynet.lighthouses names ${name}, which is a ${lighthouse.role}, not a lighthouse`);
    for (const endpoint of endpoints) {
      const match = ENDPOINT.exec(endpoint);
      if (!match || Number(match[2]) < 1 || Number(match[2]) > 65535) {
        throw new NebulaConfigError(`psynet.lighthouses.${name}: "${endpoint}" is not a public address:port`);
      }
    }
    if (endpoints.length > 0) staticHostMap[lighthouse.ip] = [...endpoints];
  }
  const lighthouseIps = Object.keys(staticHostMap);
  if (!isLighthouse && lighthouseIps.length === 0) {
    throw new NebulaConfigError(
      'no lighthouse has a public endpoint: add one to psynet.lighthouses in psyops.config.json, e.g. {"lighthouse1": ["203.0.113.10:4242"]}',
    );
  }
  const pki = 'inline' in options.pki ? options.pki.inline : options.pki.paths;
  const config = {
    pki: { ca: pki.ca, cert: pki.cert, key: pki.key },
    static_host_map: staticHostMap,
    lighthouse: {
      am_lighthouse: isLighthouse,
      interval: 60,
      // A lighthouse must not list lighthouses (nebula warns); everyone else lists all of them.
      hosts: isLighthouse ? [] : lighthouseIps,
    },
    listen: { host: '0.0.0.0', port: isLighthouse ? options.lighthousePort : 0 },
    ...nebulaCommonSettings(),
  };
  return `# Nebula config for ${host.name} (${host.role}, ${host.ip}), written by psyops psynet config\n${stringify(config, { lineWidth: 0 })}`;
}
