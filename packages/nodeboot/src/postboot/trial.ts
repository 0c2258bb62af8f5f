/**
 * The end of a boot from a disk slot: what status.json says about the slot, and a trial boot made
 * good (grubenv, watchdog disarmed) or recorded as failed and left for GRUB to roll back.
 */
import { closeSync, constants, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { NodeSystem } from '../system.js';
import { bootedRelease, bootedSlot, kernelWords, type SlotLetter } from '../slot-update/update.js';
import { commandMounter, updateGrubEnv, withVolume, type VolumeMounter } from '../slot-update/volumes.js';
import { NODE_PATHS, oneLine } from './context.js';

export const TRIAL_FAILURE_PATH = `${NODE_PATHS.stateDir}/trial-failure.json`;
export const UNKNOWN_TRIAL_FAILURE = 'did not reach status=ok (kernel panic, hang or power loss before postboot finished)';

export interface SlotBootStatus {
  release: string | null;
  slot: SlotLetter | null;
  trial: boolean;
  rollback?: { slot: SlotLetter; version: string | null; reason: string };
}

async function slotVersion(mounter: VolumeMounter, slot: SlotLetter): Promise<string | null> {
  try {
    return await withVolume(mounter, `psyopsOS-${slot}`, 'ext4', 'ro', async (dir) => {
      const version = (JSON.parse(readFileSync(join(dir, 'psyopsOS-slot.json'), 'utf8')) as { version?: unknown }).version;
      return typeof version === 'string' ? version : null;
    });
  } catch {
    return null;
  }
}

/** For status.json: the booted release and slot, whether this is a trial, and a rollback with its reason. */
export async function slotBootStatus(system: NodeSystem, mounter: VolumeMounter = commandMounter(system)): Promise<SlotBootStatus> {
  const words = await kernelWords(system);
  const slot = await bootedSlot(system).catch(() => null);
  const status: SlotBootStatus = { release: (await bootedRelease(system))?.release ?? null, slot, trial: words.get('psyopsos.trial') === '1' };
  const from = words.get('psyopsos.rolled_back_from');
  if (from !== 'A' && from !== 'B') return status;
  const version = await slotVersion(mounter, from);
  let reason = UNKNOWN_TRIAL_FAILURE;
  try {
    const record = JSON.parse((await system.readFile(TRIAL_FAILURE_PATH))?.toString('utf8') ?? 'null') as {
      slot?: unknown;
      version?: unknown;
      reason?: unknown;
    } | null;
    if (record && record.slot === from && record.version === version && typeof record.reason === 'string') reason = record.reason;
  } catch {
    // an unreadable record says nothing about this rollback
  }
  return { ...status, rollback: { slot: from, version, reason } };
}

export interface TrialOutcome {
  status: 'ok' | 'degraded' | 'failed';
  problems: string[];
  release: string;
  slot: SlotLetter;
}

/** Writes the magic `V` to /dev/watchdog: the kernel stops the countdown the initramfs armed. */
function disarmWatchdog(system: NodeSystem): void {
  const fd = openSync(system.pathOnHost('/dev/watchdog'), constants.O_WRONLY);
  try {
    writeSync(fd, 'V');
  } finally {
    closeSync(fd);
  }
}

export interface TrialEnd {
  /** What was done, for the postboot log (and the console). */
  lines: string[];
  /** The trial failed: the caller reboots once it has recorded the status (GRUB then boots the good slot). */
  reboot: boolean;
}

/** The end of a trial boot: an ok boot marks its slot good and disarms the watchdog; any other is recorded as failed. */
export async function finishTrial(system: NodeSystem, outcome: TrialOutcome, mounter: VolumeMounter = commandMounter(system)): Promise<TrialEnd> {
  const { slot, release } = outcome;
  if (outcome.status === 'ok') {
    try {
      await updateGrubEnv(mounter, { psyops_good: slot, psyops_trying: '' });
    } catch (error) {
      // Not marked good: the watchdog stays armed and the next boot rolls back, which is the safe side.
      return { lines: [`slot ${slot} could not be marked good (${oneLine(error)}); the next boot rolls back`], reboot: false };
    }
    const lines: string[] = [];
    try {
      disarmWatchdog(system);
    } catch (error) {
      lines.push(`the watchdog could not be disarmed (${oneLine(error)})`);
    }
    return { lines: [...lines, `slot ${slot} marked good (${release})`], reboot: false };
  }
  const reason = outcome.problems.join('; ') || `status=${outcome.status}`;
  const lines: string[] = [];
  try {
    await system.writeFile(TRIAL_FAILURE_PATH, `${JSON.stringify({ slot, version: release, reason })}\n`, 0o600);
  } catch (error) {
    lines.push(`the trial failure could not be recorded (${oneLine(error)})`);
  }
  lines.push(`trial of ${release} in slot ${slot} failed: ${reason}; rebooting into the last good slot`);
  return { lines, reboot: true };
}
