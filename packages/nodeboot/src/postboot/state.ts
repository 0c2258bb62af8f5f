/** The psyops-state volume (optional), mounted before the config step: the last good config's home across reboots. */
import { STATE_LABEL, type SecretVolume } from '../secret-volume.js';
import type { NodeStatus } from '../status.js';
import { readLastGood, type VerifiedConfig } from './config.js';
import { NODE_PATHS, failed, ok, oneLine, skipped, type Outcome, type StepContext } from './context.js';

export interface StateFindings {
  lastGoodStore: NodeStatus['lastGood'];
  /** The last good config kept there (or in RAM, from earlier this power cycle), its signature checked again. */
  lastGood?: VerifiedConfig;
}

async function mountStateVolume({ system }: StepContext): Promise<Outcome & Pick<StateFindings, 'lastGoodStore'>> {
  // No wait of its own: it is looked for after the secret volume's wait, when disks have shown up.
  const device = await system.findDeviceByLabel(STATE_LABEL);
  if (device === undefined) return { ...skipped(`no volume labelled ${STATE_LABEL}: the last good config is kept in RAM only`), lastGoodStore: 'memory' };
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
  return { ...mounted, lastGood: volume && (await readLastGood(context, volume)) };
}
