/**
 * Step 5: the node config: fetched from the site and verified, or else the last good one (checked
 * again); applied (hostname, files, packages, services, psynet firewall); kept as the last good one.
 */
import type { NodeConfig } from '@psyops/siteapi/schemas';
import { checkNodeConfig } from '@psyops/siteapi/validators';
import { decryptAge } from '../age-decrypt.js';
import { NodeConfigRejectedError } from '../errors.js';
import type { SecretVolume } from '../secret-volume.js';
import type { NodeStatus } from '../status.js';
import { NODE_PATHS, failed, ok, oneLine, skipped, type Outcome, type StepContext } from './context.js';
import { setHostname } from './network.js';
import { applyFirewall, type NebulaSetup } from './psynet.js';
import { keepSigned, readKept, refuseReplay } from './last-good.js';
import type { SignedDocument, SiteClient } from './site.js';

/** A node config whose signature was checked, with the signed document it came from. */
export interface VerifiedConfig {
  config: NodeConfig;
  document: SignedDocument;
}

type ConfigReport = NodeStatus['config'];

export interface ConfigFindings {
  report: ConfigReport;
  /** The config in effect, when one was applied. */
  applied?: NodeConfig;
  /** The hostname in effect: the config's, once applied. */
  hostname: string;
}

const configReport = (version: number | null, source: ConfigReport['source'], signature: ConfigReport['signature'], reason?: string): ConfigReport => ({
  version,
  source,
  signature,
  ...(reason !== undefined ? { reason } : {}),
});

const configPath = (volume: SecretVolume) => `nodes/${volume.nodename}.json`;

function parseNodeConfig(value: unknown, nodename: string, path: string): NodeConfig {
  const result = checkNodeConfig(value);
  if (!result.ok) throw new NodeConfigRejectedError(`${path}: ${result.error}`);
  if (result.value.name !== nodename) throw new NodeConfigRejectedError(`${path} is the config of node "${result.value.name}", not of ${nodename}`);
  return result.value;
}

/** The last good config kept in /var/lib/psyopsOS, its signature checked again; undefined when there is none or it does not check out. */
export function readLastGood(context: StepContext, volume: SecretVolume): Promise<VerifiedConfig | undefined> {
  const path = configPath(volume);
  return readKept(context, NODE_PATHS.lastGoodConfig, path, volume.minisignPublicKey, (value) => ({ config: parseNodeConfig(value, volume.nodename, path) }));
}

type SiteOffer = { fresh: VerifiedConfig } | { refusal: string; signature: 'refused' | 'not-fetched' };

/** This node's config from the site, verified and not older than the last good one; or why there is none. */
async function configFromSite(site: SiteClient | undefined, volume: SecretVolume, lastGood: VerifiedConfig | undefined): Promise<SiteOffer> {
  if (!site) return { refusal: `no site URL (${NODE_PATHS.siteUrl} in the image, or site.url on the secret volume)`, signature: 'not-fetched' };
  const path = configPath(volume);
  try {
    const fetched = await site.getVerified(path);
    if (fetched === undefined) return { refusal: `the site has no ${path}`, signature: 'not-fetched' };
    const config = parseNodeConfig(fetched.value, volume.nodename, path);
    refuseReplay(
      path,
      { version: config.version, json: fetched.document.json },
      lastGood && { version: lastGood.config.version, json: lastGood.document.json },
    );
    return { fresh: { config, document: fetched.document } };
  } catch (error) {
    return { refusal: oneLine(error), signature: error instanceof NodeConfigRejectedError ? 'refused' : 'not-fetched' };
  }
}

/** Applies a verified config but its hostname; returns what did not work (secrets never appear in it). */
async function applyConfig({ system }: StepContext, config: NodeConfig, volume: SecretVolume, nebula: NebulaSetup | undefined): Promise<string[]> {
  const problems: string[] = [];
  for (const file of config.files) {
    try {
      const mode = Number.parseInt(file.mode, 8);
      // The schema's rule again: the node's generated validators cannot check one field against another.
      if (mode > 0o777 && file.allowSpecialBits !== true)
        throw new NodeConfigRejectedError(`mode ${file.mode} has setuid, setgid or sticky bits and the file does not set allowSpecialBits`);
      const data = typeof file.content === 'string' ? file.content : decryptAge(file.content.age, volume.ageIdentity).toString('utf8');
      await system.writeFile(file.path, data, mode);
    } catch (error) {
      problems.push(`file ${file.path}: ${oneLine(error)}`);
    }
  }
  if (config.packages.length > 0) {
    if (!(await system.hasCommand('apk'))) problems.push(`apk is not installed: cannot add ${config.packages.join(' ')}`);
    else {
      const result = await system.run('apk', ['add', '--no-progress', ...config.packages], 300_000);
      if (result.exitCode !== 0) problems.push(`apk add failed (exit ${result.exitCode}): ${result.stderr.trim().split('\n').at(-1) ?? ''}`);
    }
  }
  for (const service of config.services) {
    if (!(await system.hasService(service))) {
      problems.push(`service ${service} is not installed`);
      continue;
    }
    try {
      await system.startService(service);
    } catch (error) {
      problems.push(`service ${service}: ${oneLine(error)}`);
    }
  }
  problems.push(...(await applyFirewall(system, nebula, config.firewall)));
  return problems;
}

export interface ConfigNeeds {
  volume: SecretVolume | undefined;
  site: SiteClient | undefined;
  lastGood: VerifiedConfig | undefined;
  lastGoodStore: NodeStatus['lastGood'];
  nebula: NebulaSetup | undefined;
  hostname: string;
}

/** Applies the chosen config and, when it is the site's, keeps it as the last good one. */
async function applyChosen(
  context: StepContext,
  needs: ConfigNeeds & { volume: SecretVolume },
  chosen: VerifiedConfig,
  from: { source: 'site' } | { source: 'last-good'; signature: ConfigReport['signature']; refusal: string },
): Promise<Outcome & ConfigFindings> {
  const fresh = from.source === 'site';
  const report = fresh
    ? configReport(chosen.config.version, 'site', 'verified')
    : configReport(chosen.config.version, 'last-good', from.signature, from.refusal);
  let hostname = needs.hostname;
  let problems: string[];
  try {
    if (chosen.config.hostname !== hostname) {
      await setHostname(context.system, chosen.config.hostname);
      hostname = chosen.config.hostname;
    }
    problems = await applyConfig(context, chosen.config, needs.volume, needs.nebula);
  } catch (error) {
    return { ...failed(oneLine(error)), report, hostname };
  }
  const findings = { report, applied: chosen.config, hostname };
  if (fresh) {
    try {
      await keepSigned(context, NODE_PATHS.lastGoodConfig, configPath(needs.volume), chosen.document);
    } catch (error) {
      return { ...failed(oneLine(error)), ...findings };
    }
  }
  const summary = `version ${chosen.config.version} applied${fresh ? ' (signature verified)' : ` (last good${needs.lastGoodStore === 'state-volume' ? ' from the state volume' : ''}: ${from.refusal})`}`;
  return { ...(fresh && problems.length === 0 ? ok(summary) : failed([summary, ...problems].join('; '))), ...findings };
}

export async function configStep(context: StepContext, needs: ConfigNeeds): Promise<Outcome & ConfigFindings> {
  const { volume, lastGood, hostname } = needs;
  if (!volume) return { ...skipped('no secret volume: no key to verify a config with'), report: configReport(null, null, 'not-fetched'), hostname };
  const offer = await configFromSite(needs.site, volume, lastGood);
  if ('fresh' in offer) return applyChosen(context, { ...needs, volume }, offer.fresh, { source: 'site' });
  if (!lastGood) return { ...failed(`${offer.refusal}; no last good config`), report: configReport(null, null, offer.signature, offer.refusal), hostname };
  return applyChosen(context, { ...needs, volume }, lastGood, { source: 'last-good', ...offer });
}
