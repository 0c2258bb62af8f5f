/**
 * The psyops-state volume, mounted before the psynet and config steps: the home across reboots of
 * the last good config and lighthouse list, whose versions are the node's downgrade protection.
 * Without it the boot still works, from RAM, but is degraded: after a reboot any older signed
 * config would be taken.
 */
import { STATE_LABEL, type SecretVolume } from '../secret-volume.js';
import type { NodeStatus } from '../status.js';
import { readLastGood, type VerifiedConfig } from './config.js';
import { NODE_PATHS, failed, ok, oneLine, type Outcome, type StepContext } from './context.js';
import { readLastGoodLighthouses, type VerifiedLighthouses } from './psynet.js';

export interface StateFindings {
  lastGoodStore: NodeStatus['lastGood'];
  /** The last good config kept there (or in RAM, from earlier this power cycle), its signature checked again. */
  lastGood?: VerifiedConfig;
  lastGoodLighthouses?: VerifiedLighthouses;
}

async function mountStateVolume({ system }: StepContext): Promise<Outcome & Pick<StateFindings, 'lastGoodStore'>> {
  // No wait of its own: it is looked for after the secret volume's wait, when disks have shown up.
  const device = await system.findDeviceByLabel(STATE_LABEL);
  if (device === undefined)
    return {
      ...failed(`no volume labelled ${STATE_LABEL}: no downgrade protection (the last good config and its version are kept in RAM only, lost at reboot)`),
      lastGoodStore: 'memory',
    };
  try {
    await system.mkdir(NODE_PATHS.stateDir, 0o700);
    await system.mountReadWrite(device, NODE_PATHS.stateDir);
  } catch (error) {
    return {
      ...failed(`${device} cannot be mounted read-write at ${NODE_PATHS.stateDir}: ${oneLine(error)}; the last good config is kept in RAM only`),
      lastGoodStore: 'memory',
    };
  }
  return { ...ok(`${device} mounted read-write at ${NODE_PATHS.stateDir}`), lastGoodStore: 'state-volume' };
}

export async function stateStep(context: StepContext, volume: SecretVolume | undefined): Promise<Outcome & StateFindings> {
  const mounted = await mountStateVolume(context);
  if (!volume) return mounted;
  const lastGoodLighthouses = await readLastGoodLighthouses(context, volume);
  return { ...mounted, lastGood: await readLastGood(context, volume), ...(lastGoodLighthouses ? { lastGoodLighthouses } : {}) };
}
