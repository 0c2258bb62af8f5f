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
import { keepSigned, readKept, refuseReplay } from './last-good.js';
import type { SignedDocument, SiteClient } from './site.js';

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

/** A lighthouse list whose signature was checked, with the signed document it came from. */
export interface VerifiedLighthouses {
  lighthouses: Lighthouse[];
  version: number;
  document: SignedDocument;
}

function parseLighthouses(value: unknown): { lighthouses: Lighthouse[]; version: number } {
  const parsed = checkLighthouses(value);
  if (!parsed.ok) throw new NodeConfigRejectedError(`${LIGHTHOUSES_PATH} does not match its schema (${parsed.error})`);
  return parsed.value;
}

/** The last good lighthouse list kept in /var/lib/psyopsOS, its signature checked again. */
export function readLastGoodLighthouses(context: StepContext, volume: SecretVolume): Promise<VerifiedLighthouses | undefined> {
  return readKept(context, NODE_PATHS.lastGoodLighthouses, LIGHTHOUSES_PATH, volume.minisignPublicKey, parseLighthouses);
}

/**
 * The lighthouses: the site's list when it is verified and not a replay (then kept as the last
 * good one), else the last good list; with a note on how they were found. A list the node refused
 * (bad signature, expired, a replay) is `refused`: the step fails, as for a refused config; an
 * unreachable site or no list is only noted (the config step reports the site).
 */
async function findLighthouses(
  context: StepContext,
  site: SiteClient | undefined,
  lastGood: VerifiedLighthouses | undefined,
): Promise<{ lighthouses: Lighthouse[]; note: string; refused?: boolean }> {
  const fallback = (why: string, refused = false) => ({
    ...(lastGood
      ? { lighthouses: lastGood.lighthouses, note: `${why}; the last good list, version ${lastGood.version}: ${lastGood.lighthouses.length} lighthouse(s)` }
      : { lighthouses: [], note: `${why}: no lighthouses` }),
    ...(refused ? { refused } : {}),
  });
  if (!site) return fallback('no site URL');
  let fresh: VerifiedLighthouses;
  try {
    const fetched = await site.getVerified(LIGHTHOUSES_PATH);
    if (fetched === undefined) return fallback('the site publishes no lighthouses');
    fresh = { ...parseLighthouses(fetched.value), document: fetched.document };
    refuseReplay(
      LIGHTHOUSES_PATH,
      { version: fresh.version, json: fresh.document.json },
      lastGood && { version: lastGood.version, json: lastGood.document.json },
    );
  } catch (error) {
    return fallback(oneLine(error), error instanceof NodeConfigRejectedError);
  }
  const note = `${fresh.lighthouses.length} lighthouse(s), list version ${fresh.version}`;
  try {
    await keepSigned(context, NODE_PATHS.lastGoodLighthouses, LIGHTHOUSES_PATH, fresh.document);
  } catch (error) {
    return { lighthouses: fresh.lighthouses, note: `${note} (not kept: ${oneLine(error)})` };
  }
  return { lighthouses: fresh.lighthouses, note };
}

export interface PsynetNeeds {
  volume: SecretVolume | undefined;
  site: SiteClient | undefined;
  /** The last good config's rules, until this boot's config is known. */
  firewall: NodeConfig['firewall'];
  lastGoodLighthouses: VerifiedLighthouses | undefined;
}

export async function psynetStep(context: StepContext, needs: PsynetNeeds): Promise<Outcome & { nebula?: NebulaSetup }> {
  const { system } = context;
  const { volume } = needs;
  const psynet = volume?.psynet;
  if (!volume) return skipped('no secret volume');
  if (!psynet) return skipped(`no ${SECRET_FILES.psynetCert} on the secret volume`);
  if (!psynet.ca) return failed(`no ${SECRET_FILES.psynetCa} on the secret volume`);
  const { lighthouses, note, refused } = await findLighthouses(context, needs.site, needs.lastGoodLighthouses);
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
  const summary = `nebula started${asLighthouse}; ${note}`;
  return { ...(refused ? failed(summary) : ok(summary)), nebula: { ...written, started: true } };
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
