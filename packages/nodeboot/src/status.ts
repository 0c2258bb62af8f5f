import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileAccessError } from '@psyops/core';
import { NODE_PATHS } from './postboot/context.js';

export type StepName = 'secret' | 'state' | 'network' | 'psynet' | 'config' | 'k3s';
export type StepResult = 'ok' | 'skipped' | 'failed';

export interface StepStatus {
  name: StepName;
  result: StepResult;
  /** Why it was skipped or failed, or a note on how it went. */
  reason?: string;
  ms: number;
}

/** `/etc/psyopsOS/status.json`, written by postboot at the end of each boot. */
export interface NodeStatus {
  format: 'psyops-node-status/1';
  status: 'ok' | 'degraded' | 'failed';
  hostname: string;
  secret: 'mounted-ro' | 'missing' | 'invalid';
  siteUrl: string | null;
  config: {
    /** The version in effect: applied from the site this boot, or the last good one. */
    version: number | null;
    source: 'site' | 'last-good' | null;
    /** What happened to the config the site served this boot. */
    signature: 'verified' | 'refused' | 'not-fetched';
    reason?: string;
  };
  k3s: 'started' | 'not-installed' | 'not-configured' | 'failed';
  /** Where the last good config is kept: on the psyops-state volume (survives a reboot) or in RAM (lost at power-off). */
  lastGood: 'state-volume' | 'memory';
  steps: StepStatus[];
  /** Why the boot is degraded or failed: `<step>: <reason>` of each failed step (empty when ok). */
  problems: string[];
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /** Process start to postboot start, when the program reported it. */
  startupMs?: number;
  /** The booted release (from the boot media), when known. */
  release?: string | null;
  /** The disk slot this boot came from; null when booted from an ISO. */
  slot?: 'A' | 'B' | null;
  /** This boot is a slot's one trial: it is marked good when postboot ends ok. */
  trial?: boolean;
  /** GRUB took this boot back to the good slot because the slot on trial did not come up. */
  rollback?: { slot: 'A' | 'B'; version: string | null; reason: string };
}

/** The status postboot wrote on a node whose root is `root` (`/` on the node itself). */
export async function readNodeStatus(root = '/'): Promise<NodeStatus> {
  const path = join(root, NODE_PATHS.status);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw fileAccessError(error, path, 'node status (written by postboot at the end of each boot)');
  }
  return JSON.parse(text) as NodeStatus;
}
