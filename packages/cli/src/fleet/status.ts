import type { SshOptions } from './ssh.js';
import { probeStatus, type NodeStatusSummary } from './telepathy.js';
import type { FleetNode } from './targets.js';

export type FleetStatusRow =
  | ({ node: string; host: string; reachable: true } & NodeStatusSummary)
  | { node: string; host: string; reachable: false; error: string };

/** Every node's telepathy status, asked all at once (each bounded by `timeoutMs`), in the nodes' order. */
export async function fleetStatus(nodes: readonly FleetNode[], timeoutMs: number, ssh: Omit<SshOptions, 'timeoutMs'> = {}): Promise<FleetStatusRow[]> {
  return Promise.all(
    nodes.map(async (node): Promise<FleetStatusRow> => {
      const probe = await probeStatus(node, timeoutMs, ssh);
      const where = { node: node.name, host: `${node.host}:${node.telepathyPort}` };
      return probe.reachable ? { ...where, reachable: true, ...probe.status } : { ...where, reachable: false, error: probe.error };
    }),
  );
}

const dash = (value: string | number | null | undefined) => (value === null || value === undefined || value === '' ? '-' : String(value));

/** A rollback record in a table cell: `from r3 (slot A)`. */
export function rollbackCell(rollback: NodeStatusSummary['rollback']): string {
  if (!rollback) return '-';
  return `from ${rollback.version ?? '?'}${rollback.slot ? ` (slot ${rollback.slot})` : ''}`;
}

export const STATUS_HEADER = ['NODE', 'HOSTNAME', 'RELEASE', 'SLOT', 'CONFIG', 'STATUS', 'ROLLBACK', 'REACHABLE'];

export function statusTableRows(rows: readonly FleetStatusRow[]): string[][] {
  return rows.map((row) =>
    row.reachable
      ? [
          row.node,
          dash(row.hostname),
          dash(row.release),
          dash(row.slot),
          dash(row.configVersion),
          `${dash(row.status)}${row.trial ? ' (trial)' : ''}`,
          rollbackCell(row.rollback),
          'yes',
        ]
      : [row.node, '-', '-', '-', '-', '-', '-', `no: ${row.error}`],
  );
}
