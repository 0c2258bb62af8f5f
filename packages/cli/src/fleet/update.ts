import type { NodeStatusSummary, StatusProbe } from './telepathy.js';
import type { FleetNode } from './targets.js';

/** What `psyops-node update --json` answers (contract: Node). */
export interface NodeUpdateAnswer {
  action: 'updated' | 'up-to-date' | 'available';
  from?: string;
  to?: string;
  slot?: string;
  bytes?: number;
  ms?: number;
}

/** How the orchestration reaches nodes: telepathy for status, SSH for the update (a fake in tests). */
export interface FleetTransport {
  status(node: FleetNode): Promise<StatusProbe>;
  /** Runs `psyops-node update --json --reboot [--version V]` on the node; rejects with a one-line error. */
  update(node: FleetNode, version: string | undefined): Promise<NodeUpdateAnswer>;
  /** Waits between status polls. */
  sleep(ms: number): Promise<void>;
  now(): number;
}

export type NodeOutcome =
  /** Went down and came back ok on the target. */
  | 'updated'
  /** Was already on the target (or psyops-node said up-to-date), and ok. */
  | 'up-to-date'
  | 'failed'
  /** Not started: an earlier node failed. */
  | 'skipped';

export interface NodeState {
  release: string | null;
  slot: string | null;
  status: string | null;
}

export interface NodeUpdateReport {
  node: string;
  outcome: NodeOutcome;
  /** Why it failed or was skipped. */
  reason?: string;
  before?: NodeState;
  after?: NodeState;
  /** The node's rollback record after it came back, when it rolled back. */
  rollback?: NodeStatusSummary['rollback'];
}

export interface FleetUpdateOptions {
  /** Nodes updated at once after the canary (the first node), ≥ 1. */
  parallel: number;
  /** The release to go to; default: what the canary updates to (the site's newest). */
  version?: string;
  /** How long a node may take to come back on the new release. */
  returnTimeoutMs: number;
  /** Between status polls while waiting. */
  pollMs?: number;
  onEvent?: (event: FleetUpdateEvent) => void;
}

export type FleetUpdateEvent =
  | { type: 'start'; node: string; canary: boolean; version: string | undefined }
  | { type: 'answered'; node: string; answer: NodeUpdateAnswer }
  | { type: 'down'; node: string; error: string }
  | { type: 'done'; report: NodeUpdateReport };

export interface FleetUpdateResult {
  /** Every node ended ok on the target. */
  ok: boolean;
  target: string | null;
  nodes: NodeUpdateReport[];
  /** The first node that did not end ok on the target. */
  failed?: { node: string; reason: string };
}

const stateOf = (status: NodeStatusSummary): NodeState => ({ release: status.release, slot: status.slot, status: status.status });

/** Why a node that came back is not done, or undefined when it is: ok on the target, no rollback. */
function notDone(status: NodeStatusSummary, target: string): string | undefined {
  const { rollback } = status;
  if (rollback) {
    const from = rollback.version ?? 'a trial';
    return `rolled back from ${from}${rollback.slot ? ` (slot ${rollback.slot})` : ''} to ${status.release ?? 'an unknown release'}${rollback.reason ? `: ${rollback.reason}` : ''}`;
  }
  if (status.release !== target) return `came back on ${status.release ?? 'an unknown release'}, not ${target}`;
  // A trial boot that reached ok is marked good by postboot; one that did not reboots into the last good slot.
  if (status.status !== 'ok') {
    const problems = status.problems.length > 0 ? `: ${status.problems.join('; ')}` : '';
    if (status.trial) return `the trial of ${target} ended ${status.status ?? 'without a status'}${problems}; the node goes back to its last good slot`;
    return `came back on ${target} with status ${status.status ?? 'unknown'}${status.problems.length > 0 ? `: ${status.problems.join('; ')}` : ''}`;
  }
  return undefined;
}

/** A newer boot than `before`: its status was written later (finishedAt is an ISO time). */
const isNewerBoot = (status: NodeStatusSummary, before: NodeStatusSummary) =>
  status.finishedAt !== null && (before.finishedAt === null || status.finishedAt > before.finishedAt);

class NodeFailure extends Error {}

/**
 * Updates one node: its status before, `psyops-node update --reboot` over SSH, then (bounded)
 * telepathy until a newer boot than before reports the target. Returns the target it reached.
 */
async function updateNode(
  node: FleetNode,
  version: string | undefined,
  transport: FleetTransport,
  options: FleetUpdateOptions,
  report: NodeUpdateReport,
  canary: boolean,
): Promise<string> {
  const fail = (reason: string): never => {
    throw new NodeFailure(reason);
  };
  const first = await transport.status(node);
  if (!first.reachable) fail(`unreachable before the update: ${first.error}`);
  const before = (first as Extract<StatusProbe, { reachable: true }>).status;
  report.before = stateOf(before);
  // Already there (another run did it): nothing to write; psyops-node would refuse the same version.
  if (version !== undefined && before.release === version) {
    if (before.status !== 'ok') fail(`on ${version} already, but its status is ${before.status ?? 'unknown'}`);
    report.outcome = 'up-to-date';
    report.after = stateOf(before);
    return version;
  }
  options.onEvent?.({ type: 'start', node: node.name, canary, version });
  let answer: NodeUpdateAnswer;
  try {
    answer = await transport.update(node, version);
  } catch (error) {
    return fail((error as Error).message);
  }
  options.onEvent?.({ type: 'answered', node: node.name, answer });
  if (answer.action === 'up-to-date') {
    const target = version ?? answer.to ?? answer.from ?? before.release ?? fail('psyops-node said up-to-date without a release');
    if (before.release !== target) fail(`psyops-node says up-to-date on ${target}, but telepathy reports ${before.release ?? 'no release'}`);
    if (before.status !== 'ok') fail(`up to date on ${target}, but its status is ${before.status ?? 'unknown'}`);
    report.outcome = 'up-to-date';
    report.after = stateOf(before);
    return target;
  }
  if (answer.action !== 'updated' || answer.to === undefined) fail(`psyops-node answered ${JSON.stringify(answer)}, not an update`);
  const target = answer.to!;
  const deadline = transport.now() + options.returnTimeoutMs;
  let last = 'still the boot before the update';
  let wentDown = false;
  while (transport.now() < deadline) {
    await transport.sleep(options.pollMs ?? 2000);
    const probe = await transport.status(node);
    if (!probe.reachable) {
      if (!wentDown) options.onEvent?.({ type: 'down', node: node.name, error: probe.error });
      wentDown = true;
      last = `unreachable: ${probe.error}`;
      continue;
    }
    if (!isNewerBoot(probe.status, before)) continue;
    report.after = stateOf(probe.status);
    if (probe.status.rollback) report.rollback = probe.status.rollback;
    const problem = notDone(probe.status, target);
    if (problem !== undefined) fail(problem);
    report.outcome = 'updated';
    return target;
  }
  return fail(`did not come back on ${target} within ${Math.round(options.returnTimeoutMs / 1000)} s (last seen: ${last})`);
}

/**
 * `psyops fleet update`: the first node is the canary; once it is back ok on the new release, the
 * rest go to that same release, at most `parallel` at once. The first node that does not come back
 * ok stops the run: nodes in flight finish, nodes not started are skipped.
 */
export async function updateFleet(nodes: readonly FleetNode[], transport: FleetTransport, options: FleetUpdateOptions): Promise<FleetUpdateResult> {
  if (!Number.isInteger(options.parallel) || options.parallel < 1) throw new RangeError('parallel must be a whole number ≥ 1');
  const reports: NodeUpdateReport[] = nodes.map((node) => ({ node: node.name, outcome: 'skipped', reason: 'not started: an earlier node failed' }));
  let failed: FleetUpdateResult['failed'];
  let target: string | null = options.version ?? null;

  const run = async (index: number, canary: boolean) => {
    const node = nodes[index]!;
    const report = reports[index]!;
    delete report.reason;
    try {
      target = await updateNode(node, target ?? undefined, transport, options, report, canary);
    } catch (error) {
      if (!(error instanceof NodeFailure)) throw error;
      report.outcome = 'failed';
      report.reason = error.message;
      failed ??= { node: node.name, reason: error.message };
    }
    options.onEvent?.({ type: 'done', report });
  };

  if (nodes.length > 0) await run(0, true);
  let next = 1;
  const worker = async () => {
    while (failed === undefined && next < nodes.length) await run(next++, false);
  };
  await Promise.all(Array.from({ length: Math.min(options.parallel, Math.max(nodes.length - 1, 0)) }, worker));
  const ok = failed === undefined && reports.every((r) => r.outcome === 'updated' || r.outcome === 'up-to-date');
  return { ok, target, nodes: reports, ...(failed ? { failed } : {}) };
}
