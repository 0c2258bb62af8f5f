/**
 * What every psynet host's Nebula config shares, whoever writes it (`psyops psynet config` on the
 * workstation, nodeboot on a node): NAT punching, the tun device, logging, and the default
 * firewall — outbound anything; inbound ICMP from anyone and anything from group `clients`, then
 * `extraInbound`. No imports, so the node's bundle takes it without a YAML library.
 */
export function nebulaCommonSettings(extraInbound: readonly Record<string, unknown>[] = []) {
  return {
    punchy: { punch: true, respond: true },
    tun: { disabled: false, dev: 'nebula1', drop_local_broadcast: false, drop_multicast: false, tx_queue: 500, mtu: 1300, routes: [], unsafe_routes: [] },
    logging: { level: 'info', format: 'text' },
    firewall: {
      conntrack: { tcp_timeout: '12m', udp_timeout: '3m', default_timeout: '10m' },
      outbound: [{ port: 'any', proto: 'any', host: 'any' }],
      inbound: [{ port: 'any', proto: 'icmp', host: 'any' }, { port: 'any', proto: 'any', group: 'clients' }, ...extraInbound],
    },
  };
}
