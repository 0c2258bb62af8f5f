/** What every postboot step works with: the node's paths, the machine, the log, and the shape of an outcome. */
import type { StepResult } from '../status.js';
import type { NodeSystem } from '../system.js';

/** Where postboot reads and writes on the node. */
export const NODE_PATHS = {
  status: '/etc/psyopsOS/status.json',
  /** Per boot: /run is a tmpfs. */
  finishedMarker: '/run/psyopsOS/postboot.finished',
  /** 0700, so only root reaches the mounted volume. */
  secretParent: '/mnt/psyops-secret',
  secretMount: '/mnt/psyops-secret/mount',
  secretEnv: '/etc/psyopsOS/psyops-secret.env',
  /** The image's site URL (written into the apkovl); a site.url on the volume overrides it. */
  siteUrl: '/etc/psyopsOS/site.url',
  /** Where the psyops-state volume is mounted when there is one; otherwise in the RAM root. */
  stateDir: '/var/lib/psyopsOS',
  /** The last good config and its signature, one file (see last-good.ts). */
  lastGoodConfig: '/var/lib/psyopsOS/last-good-config.json',
  lastGoodLighthouses: '/var/lib/psyopsOS/last-good-lighthouses.json',
  logDir: '/var/log',
  nebulaDir: '/etc/nebula',
  k3sConfig: '/etc/rancher/k3s/config.yaml',
  k3sConfD: '/etc/conf.d/k3s',
} as const;

/** The hostname of a node that does not know its name (no usable secret volume). */
export const UNCONFIGURED_HOSTNAME = 'psyopsOS-unconfigured';

export const oneLine = (error: unknown) => (error instanceof Error ? error.message : String(error)).split('\n')[0]!.slice(0, 300);
export const iso = (ms: number) => new Date(ms).toISOString();
const logStamp = (ms: number) =>
  iso(ms)
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');

/** The log: the console and /var/log/postboot.<timestamp> (0600), rewritten as it grows. Never given a secret. */
export class PostbootLog {
  private readonly lines: string[] = [];
  readonly path: string;

  constructor(
    private readonly system: NodeSystem,
    startedAt: number,
  ) {
    this.path = `${NODE_PATHS.logDir}/postboot.${logStamp(startedAt)}`;
  }

  async line(message: string): Promise<void> {
    this.system.console(`nodeboot: ${message}`);
    this.lines.push(`${iso(this.system.now())} ${message}`);
    await this.system.writeFile(this.path, `${this.lines.join('\n')}\n`, 0o600).catch(() => undefined);
  }
}

export interface StepContext {
  readonly system: NodeSystem;
  readonly log: PostbootLog;
}

/** A step's outcome: ok with an optional note, skipped or failed with a reason. */
export type Outcome = { result: StepResult; reason?: string };
export const ok = (reason?: string): Outcome => ({ result: 'ok', ...(reason ? { reason } : {}) });
export const skipped = (reason: string): Outcome => ({ result: 'skipped', reason });
export const failed = (reason: string): Outcome => ({ result: 'failed', reason });
