import { posix } from 'node:path';
import { configStep } from './postboot/config.js';
import { NODE_PATHS, PostbootLog, UNCONFIGURED_HOSTNAME, failed, iso, oneLine, type Outcome, type StepContext } from './postboot/context.js';
import { k3sStep } from './postboot/k3s.js';
import { networkStep } from './postboot/network.js';
import { psynetStep } from './postboot/psynet.js';
import { secretStep } from './postboot/secret.js';
import { SiteClient } from './postboot/site.js';
import { stateStep } from './postboot/state.js';
import { finishTrial, slotBootStatus, type SlotBootStatus } from './postboot/trial.js';
import { commandMounter, type VolumeMounter } from './slot-update/volumes.js';
import type { NodeStatus, StepName, StepStatus } from './status.js';
import type { NodeSystem } from './system.js';

export interface PostbootOptions {
  /** Attempts at reaching the site before giving up (default 4). */
  siteAttempts?: number;
  /** Wait before the second attempt, doubled each time (default 1000 ms). */
  siteRetryDelayMs?: number;
  /** Deadline of each fetch, connection to last byte (default 10 000 ms). */
  fetchTimeoutMs?: number;
  /** How long to wait for the secret volume to appear, e.g. while USB enumerates (default 5000 ms). */
  secretWaitMs?: number;
  /** Poll interval while waiting for it (default 200 ms: a look reads a few superblocks, no process). */
  secretPollMs?: number;
  /** How long the program took to start before calling runPostboot (node start-up and module loading), reported in the status. */
  startupMs?: number;
  /** How the slots and the ESP are mounted for a trial or a rollback (default: mount/umount through the system). */
  mounter?: VolumeMounter;
  /** Also print the status as one console line `psyopsOS: status {…}` before the last line (for serial-console tests). */
  printStatus?: boolean;
}

export interface PostbootResult {
  /** null when this boot had already finished postboot. */
  status: NodeStatus | null;
  exitCode: number;
}

/** Exit codes: 0 ok (or already done), 1 failed (no usable secret volume), 2 degraded. */
export const POSTBOOT_EXIT = { ok: 0, failed: 1, degraded: 2 } as const;

/** Runs the steps in order, each timed, logged and recorded; a step that throws is failed and the rest go on. */
class StepRunner {
  readonly steps: StepStatus[] = [];

  constructor(private readonly context: StepContext) {}

  /** `fallback` is what the later steps get from a step that threw. */
  async run<T extends object>(name: StepName, title: string, fallback: T, step: () => Promise<Outcome & T>): Promise<T> {
    const { system, log } = this.context;
    const began = system.now();
    let done: Outcome & T;
    try {
      done = await step();
    } catch (error) {
      done = { ...fallback, ...failed(oneLine(error)) };
    }
    const { result, reason } = done;
    this.steps.push({ name, result, ...(reason ? { reason } : {}), ms: system.now() - began });
    await log.line(`${title}: ${result}${reason ? ` (${reason})` : ''}`);
    return done;
  }
}

/** Step 7: status.json, the finished marker, and the console's last line(s). */
async function recordStatus({ system, log }: StepContext, report: NodeStatus, printStatus: boolean): Promise<void> {
  const rollback = report.rollback ? ` rolled-back-from=${report.rollback.version ?? `slot-${report.rollback.slot}`}` : '';
  await system.mkdir('/etc/psyopsOS', 0o755);
  await system.writeFile(NODE_PATHS.status, `${JSON.stringify(report, null, 2)}\n`, 0o644);
  await system.mkdir(posix.dirname(NODE_PATHS.finishedMarker), 0o755);
  await system.writeFile(NODE_PATHS.finishedMarker, `${report.finishedAt} ${report.status}\n`, 0o644);
  await log.line(`finished: ${report.status} in ${report.durationMs} ms`);
  if (printStatus) system.console(`psyopsOS: status ${JSON.stringify(report)}`);
  system.console(
    `psyopsOS: postboot finished status=${report.status} hostname=${report.hostname} config=${report.config.version ?? 'none'} secret=${report.secret}${rollback}`,
  );
}

/** The booted slot, release and any rollback; an ISO boot or an unreadable slot says nothing (never fails the boot). */
async function slotStatus(context: StepContext, mounter: VolumeMounter): Promise<Partial<SlotBootStatus>> {
  try {
    const boot = await slotBootStatus(context.system, mounter);
    if (boot.rollback) await context.log.line(`rolled back from ${boot.rollback.version ?? `slot ${boot.rollback.slot}`}: ${boot.rollback.reason}`);
    return boot;
  } catch (error) {
    await context.log.line(`booted slot unknown (${oneLine(error)})`);
    return {};
  }
}

/**
 * postboot: individuates the node at boot, in order: (1) exits if this boot already finished,
 * (2) the secret volume, then the psyops-state volume (the last good config's home across
 * reboots, its version the downgrade protection: without it the boot is degraded), (3) hostname, interfaces, SSH host key, networking, (4) psynet,
 * (5) the signed node config, (6) k3s, (7) the booted slot and release, a trial boot settled (its slot
 * marked good at ok, otherwise recorded and rebooted after the final line), status.json, the finished marker and the final line
 * `psyopsOS: postboot finished status=… hostname=… config=… secret=…`. Never throws for a
 * failing step: each is recorded and the rest go on.
 */
export async function runPostboot(system: NodeSystem, options: PostbootOptions = {}): Promise<PostbootResult> {
  if (await system.exists(NODE_PATHS.finishedMarker)) {
    system.console(`psyopsOS: postboot already finished this boot (see ${NODE_PATHS.status})`);
    return { status: null, exitCode: POSTBOOT_EXIT.ok };
  }
  const settings = {
    siteAttempts: 4,
    siteRetryDelayMs: 1000,
    fetchTimeoutMs: 10_000,
    secretWaitMs: 5000,
    secretPollMs: 200,
    printStatus: false,
    startupMs: -1,
    ...options,
  };
  const startedAt = system.now();
  const context: StepContext = { system, log: new PostbootLog(system, startedAt) };
  await system.mkdir(NODE_PATHS.logDir, 0o755);
  await context.log.line(`postboot started (log ${context.log.path})`);
  const runner = new StepRunner(context);

  const secret = await runner.run('secret', 'secret volume', { secret: 'missing' as const }, () => secretStep(context, settings));
  const { volume } = secret;
  const site = volume && secret.siteUrl !== undefined ? new SiteClient(secret.siteUrl, volume.minisignPublicKey, context, settings) : undefined;
  const state = await runner.run('state', 'state volume', { lastGoodStore: 'memory' as const }, () => stateStep(context, volume));
  const network = await runner.run('network', 'hostname, interfaces, SSH, networking', { hostname: UNCONFIGURED_HOSTNAME }, () => networkStep(context, volume));
  const psynet = await runner.run('psynet', 'psynet (Nebula)', {}, () =>
    psynetStep(context, { volume, site, firewall: state.lastGood?.config.firewall ?? [], lastGoodLighthouses: state.lastGoodLighthouses }),
  );
  const config = await runner.run(
    'config',
    'node config from the site',
    { report: { version: null, source: null, signature: 'not-fetched' as const }, hostname: network.hostname },
    () =>
      configStep(context, { volume, site, lastGood: state.lastGood, lastGoodStore: state.lastGoodStore, nebula: psynet.nebula, hostname: network.hostname }),
  );
  const k3s = await runner.run('k3s', 'k3s', { k3s: 'not-configured' as const }, () =>
    k3sStep(context, { k3s: config.applied?.k3s, ageIdentity: volume?.ageIdentity, hostname: config.hostname }),
  );

  const mounter = options.mounter ?? commandMounter(system);
  const boot = await slotStatus(context, mounter);
  const { steps } = runner;
  const status: NodeStatus['status'] = secret.secret !== 'mounted-ro' ? 'failed' : steps.some((s) => s.result === 'failed') ? 'degraded' : 'ok';
  const finishedAt = system.now();
  const report: NodeStatus = {
    format: 'psyops-node-status/1',
    status,
    hostname: config.hostname,
    secret: secret.secret,
    siteUrl: site?.baseUrl ?? null,
    config: config.report,
    k3s: k3s.k3s,
    lastGood: state.lastGoodStore,
    steps,
    problems: steps.filter((step) => step.result === 'failed').map((step) => `${step.name}: ${step.reason ?? 'failed'}`),
    startedAt: iso(startedAt),
    finishedAt: iso(finishedAt),
    durationMs: finishedAt - startedAt,
    ...(settings.startupMs >= 0 ? { startupMs: settings.startupMs } : {}),
    ...boot,
  };
  // A trial is settled before status.json says ok: whoever sees ok on the new release sees a slot marked good.
  const trial =
    boot.trial && boot.slot && boot.release
      ? await finishTrial(system, { status, problems: report.problems, release: boot.release, slot: boot.slot }, mounter)
      : undefined;
  for (const line of trial?.lines ?? []) await context.log.line(line);
  await recordStatus(context, report, settings.printStatus);
  if (trial?.reboot) await system.run('reboot', [], 60_000);
  return { status: report, exitCode: POSTBOOT_EXIT[status] };
}
