import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { currentWorkspace } from '../context.js';
import { UsageError } from '../errors.js';
import { FleetUpdateError, NodeUnreachableError } from '../fleet/errors.js';
import { fleetStatus, STATUS_HEADER, statusTableRows } from '../fleet/status.js';
import { formatTable } from '../fleet/table.js';
import { readInventory, resolveFleetNodes, workspaceNodeAddresses, type FleetNode, type InventoryEntry } from '../fleet/targets.js';
import { networkTransport } from '../fleet/transport.js';
import { updateFleet, type FleetUpdateEvent, type NodeUpdateReport } from '../fleet/update.js';
import { NoWorkspaceError, WORKSPACE_LAYOUT } from '../workspace.js';

/** A release tag as site build publishes it: it goes into the remote command line, so nothing else. */
const RELEASE = /^[A-Za-z0-9._+~-]{1,64}$/;

interface ReachOptions {
  inventory?: string;
  sshOption?: string[];
  identity?: string;
  json?: boolean;
  timeout?: string;
}

interface UpdateOptions extends ReachOptions {
  parallel: string;
  to?: string;
}

const repeatable = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** Options both fleet commands take: how nodes are reached. */
function addReachOptions(command: Command): Command {
  return command
    .option(
      '--inventory <FILE>',
      'reach nodes as this file says: {"nodes":{"<name>":{"host":"…","sshPort":22,"telepathyPort":7453,"telepathyVia":"http"|"ssh"}}} (default: their psynet address; "ssh" asks telepathy on the node through SSH)',
    )
    .addOption(new Option('--ssh-option <OPT>', 'passed to ssh as -o OPT (repeatable)').argParser(repeatable))
    .option('--identity <FILE>', 'ssh identity file (-i FILE)')
    .option('--json', 'print one JSON object to stdout');
}

const sshSettings = (options: ReachOptions) => ({
  ...(options.identity !== undefined ? { identity: resolve(options.identity) } : {}),
  options: options.sshOption ?? [],
});

function seconds(text: string, option: string, max: number): number {
  if (!/^\d{1,6}$/.test(text) || Number(text) < 1 || Number(text) > max)
    throw new UsageError(`${option} must be a whole number of seconds from 1 to ${max}, got "${text}"`);
  return Number(text);
}

/** The nodes asked for, with their addresses: the workspace's nodes/, then the inventory. */
async function fleetNodes(names: readonly string[], options: ReachOptions, cmd: Command): Promise<FleetNode[]> {
  const inventory: Map<string, InventoryEntry> = options.inventory !== undefined ? await readInventory(resolve(options.inventory)) : new Map();
  let addresses = new Map<string, string | undefined>();
  try {
    const workspace = await currentWorkspace(cmd);
    addresses = await workspaceNodeAddresses(workspace.place('nodes'));
  } catch (error) {
    // An inventory alone is enough to reach nodes; without one the workspace is the only source.
    if (!(error instanceof NoWorkspaceError) || options.inventory === undefined) throw error;
  }
  const nodes = resolveFleetNodes(names, addresses, inventory);
  if (nodes.length === 0)
    throw new UsageError(`no nodes: the workspace has no ${WORKSPACE_LAYOUT.nodes}/*.json (psyops node create) and no --inventory names any`);
  return nodes;
}

function statusCommand(): Command {
  const command = new Command('status')
    .summary("every node's release, slot, config version and status, from telepathy")
    .description(
      "Ask each node's telepathy (GET /status, port 7453 at its psynet address from nodes/<name>.json, or as --inventory says) for the status postboot wrote at the end of its last boot, " +
        'and print a table: node, hostname, release, slot, config version, status, rollback (the trial it came back from), and whether it was reachable (else why not). ' +
        'All nodes are asked at once, each within --timeout. Exit 1 when a node could not be reached.',
    )
    .argument('[NODE...]', 'nodes to ask (default: every node of the workspace)')
    .option('--timeout <S>', 'seconds to wait for each node', '5');
  return addReachOptions(command).action(async (names: string[], options: ReachOptions, cmd: Command) => {
    const timeout = seconds(options.timeout ?? '5', '--timeout', 600);
    const nodes = await fleetNodes(names, options, cmd);
    const rows = await fleetStatus(nodes, timeout * 1000, sshSettings(options));
    if (options.json) process.stdout.write(`${JSON.stringify({ nodes: rows })}\n`);
    else process.stdout.write(formatTable(STATUS_HEADER, statusTableRows(rows)));
    const unreachable = rows.filter((row) => !row.reachable);
    if (unreachable.length > 0) {
      throw new NodeUnreachableError(`${unreachable.length} of ${rows.length} node(s) unreachable: ${unreachable.map((row) => row.node).join(', ')}`);
    }
  });
}

const cell = (value: string | null | undefined) => value ?? '-';

function updateTable(reports: readonly NodeUpdateReport[]): string {
  return formatTable(
    ['NODE', 'BEFORE', 'SLOT', 'STATUS', 'AFTER', 'SLOT', 'STATUS', 'RESULT'],
    reports.map((r) => [
      r.node,
      cell(r.before?.release),
      cell(r.before?.slot),
      cell(r.before?.status),
      cell(r.after?.release),
      cell(r.after?.slot),
      cell(r.after?.status),
      r.reason ? `${r.outcome}: ${r.reason}` : r.outcome,
    ]),
  );
}

/** One stderr line per step, so a long update shows where it is. */
function describe(event: FleetUpdateEvent): string {
  switch (event.type) {
    case 'start':
      return `${event.node}: updating${event.canary ? ' (canary)' : ''}${event.version !== undefined ? ` to ${event.version}` : ''}`;
    case 'answered':
      return event.answer.action === 'updated'
        ? `${event.node}: ${event.answer.from ?? '?'} → ${event.answer.to ?? '?'} written to slot ${event.answer.slot ?? '?'}; rebooting`
        : `${event.node}: ${event.answer.action}${event.answer.from !== undefined ? ` on ${event.answer.from}` : ''}`;
    case 'down':
      return `${event.node}: down (${event.error})`;
    case 'done': {
      const r = event.report;
      if (r.outcome === 'failed') return `${r.node}: failed: ${r.reason ?? ''}`;
      return `${r.node}: ${r.outcome === 'updated' ? 'back' : 'up to date'} on ${r.after?.release ?? '?'} (slot ${r.after?.slot ?? '?'}, ${r.after?.status ?? '?'})`;
    }
  }
}

function updateCommand(): Command {
  const command = new Command('update')
    .summary('update nodes to the newest release over SSH, canary first')
    .description(
      'The first NODE is the canary: `ssh root@<node> psyops-node update --json --reboot` writes the new release to its other slot and reboots into it once; ' +
        "fleet then waits (--timeout) until the node's telepathy reports a newer boot ok on the new release (a trial that fails rolls back by itself, and that is reported). " +
        'Then the other nodes go to that same release, at most --parallel at once. The first node that does not come back ok on it stops the run: nodes in flight finish, ' +
        'the rest are skipped. A node already on the release is left alone. A table before/after ends the run; exit 0 only when every node ended ok on the release.\n' +
        'ssh runs with BatchMode=yes (keys only), ConnectTimeout=10 and the --ssh-option and --identity given.',
    )
    .argument('<NODE...>', 'nodes to update, the canary first')
    .option('--parallel <N>', 'nodes updated at once after the canary', '1')
    .option('--to <RELEASE>', 'the release to go to (default: the newest the site points to, os/update-<arch>.json)')
    .option('--timeout <S>', "seconds each node's update command, and then its return on the new release, may take", '600');
  return addReachOptions(command).action(async (names: string[], options: UpdateOptions, cmd: Command) => {
    if (!/^\d{1,3}$/.test(options.parallel) || Number(options.parallel) < 1)
      throw new UsageError(`--parallel must be a whole number from 1 to 999, got "${options.parallel}"`);
    if (options.to !== undefined && !RELEASE.test(options.to)) {
      throw new UsageError(`--to must be a release tag (letters, digits and ._+~-), got "${options.to}"`);
    }
    const timeout = seconds(options.timeout ?? '600', '--timeout', 86_400);
    const nodes = await fleetNodes(names, options, cmd);
    const transport = networkTransport({
      ssh: sshSettings(options),
      updateTimeoutMs: timeout * 1000,
      statusTimeoutMs: 5000,
    });
    const result = await updateFleet(nodes, transport, {
      parallel: Number(options.parallel),
      returnTimeoutMs: timeout * 1000,
      ...(options.to !== undefined ? { version: options.to } : {}),
      onEvent: (event) => process.stderr.write(`${describe(event)}\n`),
    });
    if (options.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else process.stdout.write(updateTable(result.nodes));
    if (!result.ok) {
      const skipped = result.nodes.filter((r) => r.outcome === 'skipped').map((r) => r.node);
      const where = result.failed ? `stopped at ${result.failed.node}: ${result.failed.reason}` : 'not every node ended ok';
      throw new FleetUpdateError(`fleet update ${where}${skipped.length > 0 ? ` (skipped: ${skipped.join(', ')})` : ''}`);
    }
  });
}

export function fleetCommand(): Command {
  return (
    new Command('fleet')
      .summary("the nodes' status, and updates canary first")
      .description('Operate the running nodes: their status from telepathy, and OS updates over SSH, canary first.')
      .addCommand(statusCommand())
      .addCommand(updateCommand())
      // createProgram gives `fleet` the CLI's exit and error-output settings; its subcommands need them too.
      .hook('preSubcommand', (fleet, subcommand) => {
        subcommand.exitOverride().configureOutput(fleet.configureOutput());
      })
  );
}
