import { AddressPlanError, InvalidNameError, UnknownRoleError } from './errors.js';
import { cidrInside, cidrsOverlap, parseCidr, type Cidr } from './ip.js';

export const ROLES = ['lighthouse', 'client', 'node'] as const;
export type Role = (typeof ROLES)[number];

/** The group every certificate of a role carries. */
export const ROLE_GROUPS: Record<Role, string> = { lighthouse: 'lighthouses', client: 'clients', node: 'psyopsOS' };

/** The address plan as the workspace config states it. */
export interface AddressPlanConfig {
  network: string;
  pools: Record<Role, string>;
}

export const DEFAULT_PLAN: AddressPlanConfig = {
  network: '10.10.8.0/22',
  pools: { lighthouse: '10.10.8.0/24', client: '10.10.9.0/24', node: '10.10.10.0/23' },
};

export interface AddressPlan {
  network: Cidr;
  pools: Record<Role, Cidr>;
}

/** Parses and checks a plan: valid CIDRs, network given by its network address, pools inside it and disjoint. */
export function resolvePlan(config: AddressPlanConfig): AddressPlan {
  const parse = (text: string, what: string): Cidr => {
    const cidr = parseCidr(text);
    if (!cidr) throw new AddressPlanError(`psynet ${what} "${text}" is not an IPv4 network in CIDR notation`);
    if (cidr.address !== cidr.first) throw new AddressPlanError(`psynet ${what} "${text}" has host bits set; write it as its network address`);
    return cidr;
  };
  const network = parse(config.network, 'network');
  if (network.prefix > 30) throw new AddressPlanError(`psynet network ${network.text} is too small`);
  const pools = {} as Record<Role, Cidr>;
  for (const role of ROLES) {
    const pool = parse(config.pools[role], `pool ${role}`);
    if (!cidrInside(pool, network)) throw new AddressPlanError(`psynet pool ${role} (${pool.text}) is not inside the network ${network.text}`);
    for (const other of ROLES) {
      const seen = pools[other];
      if (seen && cidrsOverlap(seen, pool)) throw new AddressPlanError(`psynet pools ${other} (${seen.text}) and ${role} (${pool.text}) overlap`);
    }
    pools[role] = pool;
  }
  return { network, pools };
}

export function assertRole(role: string): Role {
  if (!(ROLES as readonly string[]).includes(role)) throw new UnknownRoleError(`unknown role "${role}": use one of ${ROLES.join(', ')}`);
  return role as Role;
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Host names are DNS labels: they become certificate names, hosts entries and zone records. */
export function assertHostName(name: string): string {
  if (!DNS_LABEL.test(name)) {
    throw new InvalidNameError(
      `invalid host name ${JSON.stringify(name)}: it must be a DNS label (1-63 lower-case letters, digits and hyphens, not starting or ending with a hyphen)`,
    );
  }
  return name;
}
