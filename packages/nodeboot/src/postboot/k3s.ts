/**
 * Step 6: /etc/rancher/k3s/config.yaml from the applied config (its token decrypted), and k3s when installed.
 * A k3s section on an image without k3s fails the step: the config asked for something the node does not run.
 */
import type { NodeConfig } from '@psyops/siteapi/schemas';
import { decryptAge } from '../age-decrypt.js';
import type { NodeStatus } from '../status.js';
import { NODE_PATHS, failed, ok, oneLine, skipped, type Outcome, type StepContext } from './context.js';

export interface K3sNeeds {
  /** The applied config's k3s settings. */
  k3s: NodeConfig['k3s'];
  /** The secret volume's age identity, for the token (a config is only ever applied with the volume). */
  ageIdentity: string | undefined;
  hostname: string;
}

export async function k3sStep({ system }: StepContext, needs: K3sNeeds): Promise<Outcome & { k3s: NodeStatus['k3s'] }> {
  const { k3s, ageIdentity } = needs;
  if (!k3s || ageIdentity === undefined) return { ...skipped('k3s is not configured'), k3s: 'not-configured' };
  const token = decryptAge(k3s.token.age, ageIdentity).toString('utf8');
  const config = { token, ...(k3s.serverUrl !== undefined ? { server: k3s.serverUrl } : {}), 'node-name': needs.hostname };
  await system.writeFile(NODE_PATHS.k3sConfig, `${JSON.stringify(config, null, 2)}\n`, 0o600);
  await system.writeFile(NODE_PATHS.k3sConfD, `# written by psyops nodeboot\nK3S_EXEC="${k3s.role}"\n`, 0o644);
  // What the k3s service runs (OpenRC's k3s script: `k3s $K3S_EXEC`, its config file read by k3s itself).
  const startCommand = `k3s ${k3s.role}`;
  if (!(await system.hasCommand('k3s')) || !(await system.hasService('k3s')))
    return { ...failed(`k3s is not installed in this image (config for ${startCommand} written)`), k3s: 'not-installed' };
  try {
    await system.startService('k3s');
  } catch (error) {
    return { ...failed(`k3s failed to start: ${oneLine(error)}`), k3s: 'failed' };
  }
  return { ...ok(`${startCommand} started`), k3s: 'started' };
}
