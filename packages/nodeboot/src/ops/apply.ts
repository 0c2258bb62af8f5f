/**
 * `psyops-node apply`: the node's config fetched, verified and applied now, without a reboot (the
 * original psyopsOS's "re-run the progfiguration"). The same rules as postboot's config step
 * (signature by the secret volume's key, this node's, not expired, no replay of an older or
 * different same-version config), then only what differs is written, started or restarted, the
 * config kept as the last good one and status.json's config fields updated for telepathy.
 */
import { statSync } from 'node:fs';
import type { NodeConfig } from '@psyops/siteapi/schemas';
import { checkNodeConfig } from '@psyops/siteapi/validators';
import { decryptAge } from '../age-decrypt.js';
import { readLastGood } from '../postboot/config.js';
import { NODE_PATHS, oneLine } from '../postboot/context.js';
import { k3sStep } from '../postboot/k3s.js';
import { keepSigned, refuseReplay } from '../postboot/last-good.js';
import { setHostname } from '../postboot/network.js';
import { applyFirewall, readLastGoodLighthouses } from '../postboot/psynet.js';
import { SiteClient } from '../postboot/site.js';
import type { SecretVolume } from '../secret-volume.js';
import type { NodeStatus } from '../status.js';
import type { NodeSystem } from '../system.js';
import { opsContext, type OpsContext } from './context.js';
import { ApplyError } from './errors.js';
import { installedPackageNames } from './installed-db.js';
import { mountedSecretVolume, siteUrlOf } from './node-identity.js';

export interface ApplyOptions {
  /** Attempts at reaching the site (default 3), the first retry after `siteRetryDelayMs` (default 1000), doubled after. */
  siteAttempts?: number;
  siteRetryDelayMs?: number;
  /** Deadline of each fetch (default 10 000 ms). */
  fetchTimeoutMs?: number;
}

export interface ApplyReport {
  action: 'applied' | 'unchanged';
  /** The config version in effect before (the last good one), null when there was none. */
  from: number | null;
  to: number;
  /** What was written, started or restarted, one entry each (`file /etc/motd`, `service app started`). */
  changed: string[];
  /** What did not work (the config is applied and kept nonetheless, as postboot does). */
  problems: string[];
}

function parseConfig(value: unknown, nodename: string, path: string): NodeConfig {
  const result = checkNodeConfig(value);
  if (!result.ok) throw new ApplyError(`${path}: ${result.error}`);
  if (result.value.name !== nodename) throw new ApplyError(`${path} is the config of node "${result.value.name}", not of ${nodename}`);
  return result.value;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Writes the config's files whose content or mode differ from what is on the machine. */
async function applyFiles(system: NodeSystem, config: NodeConfig, volume: SecretVolume, changed: string[], problems: string[]): Promise<void> {
  for (const file of config.files) {
    try {
      const mode = Number.parseInt(file.mode, 8);
      // The schema's rule again, as postboot checks it: the generated validators cannot compare fields.
      if (mode > 0o777 && file.allowSpecialBits !== true) throw new ApplyError(`mode ${file.mode} has setuid, setgid or sticky bits without allowSpecialBits`);
      const data = Buffer.from(typeof file.content === 'string' ? file.content : decryptAge(file.content.age, volume.ageIdentity).toString('utf8'));
      const existing = await system.readFile(file.path);
      const existingMode = existing === undefined ? undefined : statSync(system.pathOnHost(file.path)).mode & 0o7777;
      if (existing?.equals(data) && existingMode === mode) continue;
      await system.writeFile(file.path, data, mode);
      changed.push(`file ${file.path}`);
    } catch (error) {
      problems.push(`file ${file.path}: ${oneLine(error)}`);
    }
  }
}

async function applyPackages(system: NodeSystem, config: NodeConfig, changed: string[], problems: string[]): Promise<void> {
  const installed = installedPackageNames((await system.readFile('/lib/apk/db/installed'))?.toString('utf8') ?? '');
  const missing = config.packages.filter((name) => !installed.has(name));
  if (missing.length === 0) return;
  if (!(await system.hasCommand('apk'))) {
    problems.push(`apk is not installed: cannot add ${missing.join(' ')}`);
    return;
  }
  const result = await system.run('apk', ['add', '--no-progress', ...missing], 300_000);
  if (result.exitCode !== 0) problems.push(`apk add failed (exit ${result.exitCode}): ${result.stderr.trim().split('\n').at(-1) ?? ''}`);
  else changed.push(...missing.map((name) => `package ${name} added`));
}

/** Services the config names that the previous config did not: started (a running service's start is a no-op). */
async function applyServices(system: NodeSystem, config: NodeConfig, previous: NodeConfig | undefined, changed: string[], problems: string[]): Promise<void> {
  for (const service of config.services) {
    if (previous?.services.includes(service)) continue;
    if (!(await system.hasService(service))) {
      problems.push(`service ${service} is not installed`);
      continue;
    }
    try {
      await system.startService(service);
      changed.push(`service ${service} started`);
    } catch (error) {
      problems.push(`service ${service}: ${oneLine(error)}`);
    }
  }
}

/** psynet's firewall rules and k3s, when the config changed them. */
async function applyPsynetAndK3s(
  context: OpsContext,
  config: NodeConfig,
  previous: NodeConfig | undefined,
  volume: SecretVolume,
  changed: string[],
  problems: string[],
): Promise<void> {
  const { system } = context;
  if (volume.psynet && !same(previous?.firewall ?? [], config.firewall)) {
    const lighthouses = (await readLastGoodLighthouses(context, volume))?.lighthouses ?? [];
    const started = (await system.hasCommand('nebula')) && (await system.hasService('nebula'));
    const failures = await applyFirewall(system, { lighthouses, self: volume.nodename, firewall: previous?.firewall ?? [], started }, config.firewall);
    problems.push(...failures);
    if (failures.length === 0) changed.push(`nebula firewall (${config.firewall.length} rule(s))${started ? ', nebula restarted' : ''}`);
  }
  if (!same(previous?.k3s, config.k3s) && config.k3s) {
    const k3s = await k3sStep(context, { k3s: config.k3s, ageIdentity: volume.ageIdentity, hostname: config.hostname });
    if (k3s.result === 'failed') problems.push(`k3s: ${k3s.reason ?? 'failed'}`);
    else {
      // k3s reads its config at start: a running k3s takes the new one only when restarted.
      try {
        await system.restartService('k3s');
        changed.push('k3s config written, k3s restarted');
      } catch (error) {
        problems.push(`k3s restart: ${oneLine(error)}`);
      }
    }
  }
}

/**
 * status.json's config fields, hostname and config step, so telepathy and `fleet status` report the
 * config now in effect (a boot degraded only by its config is ok once a config applies cleanly).
 * Every other field (release, slot, …) is kept as postboot wrote it.
 */
async function recordApplied(system: NodeSystem, config: NodeConfig, problems: string[]): Promise<void> {
  const bytes = await system.readFile(NODE_PATHS.status);
  if (!bytes) return; // postboot writes it at the end of the boot; before that there is nothing to amend
  const status = JSON.parse(bytes.toString('utf8')) as NodeStatus;
  const summary = `version ${config.version} applied by psyops-node apply (signature verified)`;
  const step = status.steps.find((s) => s.name === 'config');
  if (step) {
    step.result = problems.length === 0 ? 'ok' : 'failed';
    step.reason = [summary, ...problems].join('; ');
  }
  status.problems = [
    ...status.problems.filter((problem) => !problem.startsWith('config: ')),
    ...(problems.length > 0 ? [`config: ${[summary, ...problems].join('; ')}`] : []),
  ];
  if (status.status !== 'failed') status.status = status.problems.length === 0 ? 'ok' : 'degraded';
  status.hostname = config.hostname;
  status.config = { version: config.version, source: 'site', signature: 'verified' };
  await system.writeFile(NODE_PATHS.status, `${JSON.stringify(status, null, 2)}\n`, 0o644);
}

/**
 * Fetches this node's signed config, verifies it as postboot does and applies what changed.
 * Throws (typed, one line) when there is no usable secret volume, the site cannot be reached or
 * the config is refused; then nothing is written.
 */
export async function runApply(system: NodeSystem, options: ApplyOptions = {}): Promise<ApplyReport> {
  const context = opsContext(system);
  const volume = await mountedSecretVolume(context.system);
  const site = new SiteClient(await siteUrlOf(context.system, volume), volume.minisignPublicKey, context, {
    siteAttempts: options.siteAttempts ?? 3,
    siteRetryDelayMs: options.siteRetryDelayMs ?? 1000,
    fetchTimeoutMs: options.fetchTimeoutMs ?? 10_000,
  });
  const path = `nodes/${volume.nodename}.json`;
  const lastGood = await readLastGood(context, volume);
  const fetched = await site.getVerified(path);
  if (fetched === undefined) throw new ApplyError(`the site ${site.baseUrl} has no ${path}`);
  const config = parseConfig(fetched.value, volume.nodename, path);
  refuseReplay(path, { version: config.version, json: fetched.document.json }, lastGood && { version: lastGood.config.version, json: lastGood.document.json });
  const from = lastGood?.config.version ?? null;
  if (lastGood?.document.json.equals(fetched.document.json)) return { action: 'unchanged', from, to: config.version, changed: [], problems: [] };

  const changed: string[] = [];
  const problems: string[] = [];
  const previous = lastGood?.config;
  const { system: quiet } = context;
  const hostname = (await quiet.readFile('/etc/hostname'))?.toString('utf8').trim();
  if (hostname !== config.hostname) {
    await setHostname(quiet, config.hostname);
    changed.push(`hostname ${config.hostname}`);
  }
  await applyFiles(quiet, config, volume, changed, problems);
  await applyPackages(quiet, config, changed, problems);
  await applyServices(quiet, config, previous, changed, problems);
  await applyPsynetAndK3s(context, config, previous, volume, changed, problems);
  await keepSigned(context, NODE_PATHS.lastGoodConfig, path, fetched.document);
  await recordApplied(quiet, config, problems);
  return { action: 'applied', from, to: config.version, changed, problems };
}
