/**
 * Step 4: psynet: /etc/nebula from the volume's certificate and the site's signed lighthouse list
 * (a node the list names is that lighthouse); nebula when installed, and a failed step when the
 * volume asks for psynet and the image has no nebula.
 */
import type { Lighthouse, NodeConfig } from '@psyops/siteapi/schemas';
import { checkLighthouses } from '@psyops/siteapi/validators';
import { NodeConfigRejectedError } from '../errors.js';
import { lighthouseListenPort, nodeNebulaConfig, ownLighthouse } from '../nebula.js';
import { SECRET_FILES, type SecretVolume } from '../secret-volume.js';
import type { NodeSystem } from '../system.js';
import { NODE_PATHS, failed, ok, oneLine, skipped, type Outcome, type StepContext } from './context.js';
import type { SiteClient } from './site.js';

/** The Nebula config as written: what a config with other firewall rules rewrites. */
export interface NebulaSetup {
  lighthouses: Lighthouse[];
  /** This node's name: it is a lighthouse when `lighthouses` names it. */
  self: string;
  firewall: NodeConfig['firewall'];
  started: boolean;
}

const LIGHTHOUSES_PATH = 'psynet/lighthouses.json';

async function writeNebulaConfig(system: NodeSystem, { lighthouses, self, firewall }: Omit<NebulaSetup, 'started'>): Promise<void> {
  const dir = NODE_PATHS.nebulaDir;
  const pki = { ca: `${dir}/ca.crt`, cert: `${dir}/host.crt`, key: `${dir}/host.key` };
  await system.writeFile(`${dir}/config.yml`, nodeNebulaConfig({ pki, lighthouses, self, firewall }), 0o644);
}

/** The lighthouses the site publishes, with a note on how they were found (a problem here does not fail the step). */
async function fetchLighthouses(site: SiteClient | undefined): Promise<{ lighthouses: Lighthouse[]; note: string }> {
  if (!site) return { lighthouses: [], note: 'no site URL: no lighthouses' };
  try {
    const fetched = await site.getVerified(LIGHTHOUSES_PATH);
    if (fetched === undefined) return { lighthouses: [], note: 'the site publishes no lighthouses' };
    const parsed = checkLighthouses(fetched.value);
    if (!parsed.ok) throw new NodeConfigRejectedError(`${LIGHTHOUSES_PATH} does not match its schema (${parsed.error})`);
    return { lighthouses: parsed.value.lighthouses, note: `${parsed.value.lighthouses.length} lighthouse(s)` };
  } catch (error) {
    return { lighthouses: [], note: `no lighthouses: ${oneLine(error)}` };
  }
}

export interface PsynetNeeds {
  volume: SecretVolume | undefined;
  site: SiteClient | undefined;
  /** The last good config's rules, until this boot's config is known. */
  firewall: NodeConfig['firewall'];
}

export async function psynetStep({ system }: StepContext, needs: PsynetNeeds): Promise<Outcome & { nebula?: NebulaSetup }> {
  const { volume } = needs;
  const psynet = volume?.psynet;
  if (!volume) return skipped('no secret volume');
  if (!psynet) return skipped(`no ${SECRET_FILES.psynetCert} on the secret volume`);
  if (!psynet.ca) return failed(`no ${SECRET_FILES.psynetCa} on the secret volume`);
  const { lighthouses, note } = await fetchLighthouses(needs.site);
  const dir = NODE_PATHS.nebulaDir;
  await system.mkdir(dir, 0o700);
  await system.writeFile(`${dir}/ca.crt`, psynet.ca, 0o644);
  await system.writeFile(`${dir}/host.crt`, psynet.cert, 0o644);
  await system.writeFile(`${dir}/host.key`, psynet.key, 0o600);
  const written: NebulaSetup = { lighthouses, self: volume.nodename, firewall: needs.firewall, started: false };
  await writeNebulaConfig(system, written);
  const own = ownLighthouse(lighthouses, volume.nodename);
  const asLighthouse = own ? ` as lighthouse on port ${lighthouseListenPort(own)}` : '';
  // The volume carries a certificate: this node is meant to be on psynet, and an image without nebula cannot put it there.
  const missing: string[] = [];
  if (!(await system.hasCommand('nebula'))) missing.push('command');
  if (!(await system.hasService('nebula'))) missing.push('service');
  if (missing.length > 0)
    return { ...failed(`nebula is not installed (no nebula ${missing.join(' or ')}; config written${asLighthouse}; ${note})`), nebula: written };
  try {
    await system.startService('nebula');
  } catch (error) {
    return { ...failed(`nebula failed to start: ${oneLine(error)}`), nebula: written };
  }
  return { ...ok(`nebula started${asLighthouse}; ${note}`), nebula: { ...written, started: true } };
}

/** Rewrites the Nebula config for the applied config's firewall rules when they differ, restarting nebula when it runs; returns what failed. */
export async function applyFirewall(system: NodeSystem, nebula: NebulaSetup | undefined, firewall: NodeConfig['firewall']): Promise<string[]> {
  if (!nebula || JSON.stringify(nebula.firewall) === JSON.stringify(firewall)) return [];
  await writeNebulaConfig(system, { ...nebula, firewall });
  if (!nebula.started) return [];
  try {
    await system.restartService('nebula');
    return [];
  } catch (error) {
    return [`nebula restart: ${oneLine(error)}`];
  }
}
