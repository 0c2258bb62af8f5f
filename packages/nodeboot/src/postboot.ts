import { posix } from 'node:path';
import { verifyBytes, type PublicKey } from '@psyops/signing';
// Types only: the schemas themselves (zod) are not loaded by the nodeboot program (see config-validation.ts).
import type { Lighthouse, NodeConfig } from '@psyops/siteapi/schemas';
import { decryptAge } from './age-decrypt.js';
import { checkLighthouses, checkNodeConfig } from './config-validation.js';
import { NodeConfigRejectedError, SiteUnreachableError } from './errors.js';
import { nodeNebulaConfig } from './nebula.js';
import { NODE_INTERFACE, SECRET_FILES, SECRET_LABEL, STATE_LABEL, parseSiteUrl, readSecretVolume, type SecretVolume } from './secret-volume.js';
import type { NodeSystem } from './system.js';

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
  lastGoodConfig: '/var/lib/psyopsOS/node-config.json',
  logDir: '/var/log',
  nebulaDir: '/etc/nebula',
  k3sConfig: '/etc/rancher/k3s/config.yaml',
  k3sConfD: '/etc/conf.d/k3s',
} as const;

export type StepName = 'secret' | 'state' | 'network' | 'psynet' | 'config' | 'k3s';
export type StepResult = 'ok' | 'skipped' | 'failed';

export interface StepStatus {
  name: StepName;
  result: StepResult;
  /** Why it was skipped or failed, or a note on how it went. */
  reason?: string;
  ms: number;
}

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
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /** Process start to postboot start, when the program reported it. */
  startupMs?: number;
}

export interface PostbootOptions {
  /** Attempts at reaching the site before giving up (default 4). */
  siteAttempts?: number;
  /** Wait before the second attempt, doubled each time (default 1000 ms). */
  siteRetryDelayMs?: number;
  /** Per request (default 10 000 ms). */
  fetchTimeoutMs?: number;
  /** How long to wait for the secret volume to appear, e.g. while USB enumerates (default 5000 ms). */
  secretWaitMs?: number;
  /** Poll interval while waiting for it (default 200 ms: a look reads a few superblocks, no process). */
  secretPollMs?: number;
  /** How long the program took to start before calling runPostboot (node start-up and module loading), reported in the status. */
  startupMs?: number;
  /** Also print the status as one console line `psyopsOS: status {…}` before the last line (for serial-console tests). */
  printStatus?: boolean;
}

export interface PostbootResult {
  /** null when this boot had already finished postboot. */
  status: NodeStatus | null;
  exitCode: number;
}

/** Exit codes: 0 ok (or already done), 1 failed (no usable secret volume), 2 degraded. */
export const POSTBOOT_EXIT = { ok: 0, failed: 1, degraded: 2 } as const;

const UNCONFIGURED_HOSTNAME = 'psyopsOS-unconfigured';

const oneLine = (error: unknown) => (error instanceof Error ? error.message : String(error)).split('\n')[0]!.slice(0, 300);
const iso = (ms: number) => new Date(ms).toISOString();
const logStamp = (ms: number) => iso(ms).replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');

/** The log: the console and /var/log/postboot.<timestamp> (0600), rewritten as it grows. Never given a secret. */
class PostbootLog {
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

/** Fetches from the site with bounded retries and backoff; once the site is found unreachable, later fetches fail at once. */
class SiteClient {
  private unreachable = false;

  constructor(
    readonly baseUrl: string,
    private readonly system: NodeSystem,
    private readonly log: PostbootLog,
    private readonly options: Required<Pick<PostbootOptions, 'siteAttempts' | 'siteRetryDelayMs' | 'fetchTimeoutMs'>>,
  ) {}

  /** The body, or undefined on 404; throws SiteUnreachableError after the retries. */
  async get(path: string): Promise<Buffer | undefined> {
    if (this.unreachable) throw new SiteUnreachableError(`site ${this.baseUrl} is unreachable`);
    const url = `${this.baseUrl}/${path}`;
    let delay = this.options.siteRetryDelayMs;
    let lastError = '';
    for (let attempt = 1; attempt <= this.options.siteAttempts; attempt++) {
      try {
        const response = await this.system.fetch(url, this.options.fetchTimeoutMs);
        if (response.status === 404) return undefined;
        if (response.status === 200) return response.body;
        lastError = `HTTP ${response.status}`;
        if (response.status < 500) break; // a client error will not go away by asking again
      } catch (error) {
        lastError = oneLine((error as Error & { cause?: unknown }).cause ?? error);
      }
      if (attempt < this.options.siteAttempts) {
        await this.log.line(`fetching ${url} failed (${lastError}); attempt ${attempt + 1} of ${this.options.siteAttempts} in ${delay} ms`);
        await this.system.sleep(delay);
        delay *= 2;
      }
    }
    this.unreachable = true;
    throw new SiteUnreachableError(`site ${this.baseUrl} is unreachable (${path}: ${lastError}, ${this.options.siteAttempts} attempts)`);
  }
}

interface SignedDocument {
  json: Buffer;
  signature: string;
}

/** Checks a signed document from the site: signature by the volume's key, the trusted comment naming this path. */
function verifySigned(document: SignedDocument, path: string, key: PublicKey): unknown {
  let trustedComment: string;
  try {
    trustedComment = verifyBytes(document.json, key, document.signature, { source: `${path}.minisig` }).trustedComment;
  } catch (error) {
    throw new NodeConfigRejectedError(`${path}: signature check failed (${oneLine(error)})`);
  }
  // siteapi signs every document with "file:<path>" in the trusted comment: another signed file cannot stand in for this one.
  if (!trustedComment.split('\t').includes(`file:${path}`)) throw new NodeConfigRejectedError(`${path}: the signature is for another file (${trustedComment.slice(0, 100)})`);
  try {
    return JSON.parse(document.json.toString('utf8'));
  } catch {
    throw new NodeConfigRejectedError(`${path} is not JSON`);
  }
}

function parseNodeConfig(value: unknown, nodename: string, path: string): NodeConfig {
  const result = checkNodeConfig(value);
  if (!result.ok) throw new NodeConfigRejectedError(`${path}: ${result.error}`);
  if (result.value.name !== nodename) throw new NodeConfigRejectedError(`${path} is the config of node "${result.value.name}", not of ${nodename}`);
  return result.value;
}

/** A secret of the config, decrypted with the volume's age identity. */
function decryptSecret(run: Run, ciphertext: string): string {
  return decryptAge(ciphertext, run.volume!.ageIdentity).toString('utf8');
}

/** The state postboot builds up as it goes. */
interface Run {
  system: NodeSystem;
  log: PostbootLog;
  options: Required<PostbootOptions>;
  volume?: SecretVolume;
  secret: NodeStatus['secret'];
  hostname: string;
  site?: SiteClient;
  lastGood?: { config: NodeConfig; document: SignedDocument };
  applied?: { config: NodeConfig; source: 'site' | 'last-good' };
  configReport: NodeStatus['config'];
  lastGoodStore: NodeStatus['lastGood'];
  nebula?: { lighthouses: Lighthouse[]; firewall: string; started: boolean };
  k3s: NodeStatus['k3s'];
}

/** A step's outcome: ok with an optional note, skipped or failed with a reason. */
type Outcome = { result: StepResult; reason?: string };
const ok = (reason?: string): Outcome => ({ result: 'ok', ...(reason ? { reason } : {}) });
const skipped = (reason: string): Outcome => ({ result: 'skipped', reason });
const failed = (reason: string): Outcome => ({ result: 'failed', reason });

// ---------- step 2: the secret volume ----------

async function findSecretDevice(run: Run): Promise<string | undefined> {
  // Counted, not timed against the clock: the wait stays bounded whatever sleep() does.
  for (let waited = 0; ; waited += run.options.secretPollMs) {
    const device = await run.system.findDeviceByLabel(SECRET_LABEL);
    if (device !== undefined || waited >= run.options.secretWaitMs) return device;
    await run.system.sleep(run.options.secretPollMs);
  }
}

/** The variables the original psyopsOS exported from the volume (paths to its files), plus the site URL. */
const SECRET_ENV_FILES: [string, keyof typeof SECRET_FILES][] = [
  ['PSYOPSOS_AGEKEY', 'ageKey'],
  ['PSYOPSOS_MINISIGN_PUB', 'minisignPublicKey'],
  ['PSYOPSOS_MACTAB', 'mactab'],
  ['PSYOPSOS_INTERFACES', 'interfaces'],
  ['PSYOPSOS_SSHD_ED25519_KEY', 'sshHostKey'],
  ['PSYOPSOS_PSYNET_HOST_CRT', 'psynetCert'],
  ['PSYOPSOS_PSYNET_HOST_KEY', 'psynetKey'],
  ['PSYOPSOS_PSYNET_CA_CRT', 'psynetCa'],
];

function secretEnv(volume: SecretVolume, siteUrl: string | undefined): string {
  const variables: [string, string][] = [['PSYOPSOS_NODENAME', volume.nodename]];
  for (const [name, role] of SECRET_ENV_FILES) if (volume.paths[role]) variables.push([name, posix.join(NODE_PATHS.secretMount, SECRET_FILES[role])]);
  if (siteUrl !== undefined) variables.push(['PSYOPSOS_SITE', siteUrl]);
  return variables.map(([name, value]) => `${name}='${value.replaceAll("'", `'\\''`)}'\n`).join('');
}

/** TESTONLYNOPROD: a uid-0 `toor` user with a blank password, for development consoles only. */
async function addToorUser(run: Run): Promise<void> {
  const passwd = (await run.system.readFile('/etc/passwd'))?.toString('utf8') ?? '';
  if (/^toor:/m.test(passwd)) return;
  const shadow = (await run.system.readFile('/etc/shadow'))?.toString('utf8');
  const withNewline = (text: string) => (text === '' || text.endsWith('\n') ? text : `${text}\n`);
  await run.system.writeFile('/etc/passwd', `${withNewline(passwd)}toor:${shadow !== undefined ? 'x' : ''}:0:0:TESTONLYNOPROD:/root:/bin/sh\n`, 0o644);
  if (shadow !== undefined) await run.system.writeFile('/etc/shadow', `${withNewline(shadow)}toor::0:0:99999:7:::\n`, 0o600);
}

async function secretStep(run: Run): Promise<Outcome> {
  const device = await findSecretDevice(run);
  if (device === undefined) {
    run.secret = 'missing';
    return failed(`no volume labelled ${SECRET_LABEL} (waited ${run.options.secretWaitMs} ms)`);
  }
  await run.system.mkdir(NODE_PATHS.secretParent, 0o700);
  await run.system.mkdir(NODE_PATHS.secretMount, 0o700);
  try {
    await run.system.mountReadOnly(device, NODE_PATHS.secretMount);
  } catch (error) {
    run.secret = 'missing';
    return failed(`${device} cannot be mounted read-only: ${oneLine(error)}`);
  }
  let volume: SecretVolume;
  try {
    volume = await readSecretVolume(run.system.pathOnHost(NODE_PATHS.secretMount));
  } catch (error) {
    run.secret = 'invalid';
    return failed(`${device}: ${oneLine(error)}`);
  }
  run.volume = volume;
  run.secret = 'mounted-ro';
  let siteUrl = volume.siteUrl;
  const imageSiteUrl = (await run.system.readFile(NODE_PATHS.siteUrl))?.toString('utf8').split('\n')[0]!.trim();
  if (siteUrl === undefined && imageSiteUrl) {
    try {
      siteUrl = parseSiteUrl(imageSiteUrl, NODE_PATHS.siteUrl);
    } catch (error) {
      await run.log.line(`ignoring ${NODE_PATHS.siteUrl}: ${oneLine(error)}`);
    }
  }
  if (siteUrl !== undefined) run.site = new SiteClient(siteUrl, run.system, run.log, run.options);
  await run.system.mkdir('/etc/psyopsOS', 0o755);
  await run.system.writeFile(NODE_PATHS.secretEnv, secretEnv(volume, siteUrl), 0o644);
  if (volume.unknownFiles.length > 0) await run.log.line(`secret volume: ignoring unknown file(s) ${volume.unknownFiles.join(', ')}`);
  if (volume.testonlyToor) {
    await addToorUser(run);
    for (let i = 0; i < 3; i++) run.system.console('psyopsOS: WARNING: TESTONLYNOPROD.env: user toor has a BLANK PASSWORD. Never use this secret volume in production.');
  }
  return ok(`${device} mounted read-only at ${NODE_PATHS.secretMount}${volume.testonlyToor ? '; TESTONLY toor user added' : ''}`);
}

// ---------- the state volume (before the config step) ----------

async function stateStep(run: Run): Promise<Outcome> {
  // No wait of its own: it is looked for after the secret volume's wait, when disks have shown up.
  const device = await run.system.findDeviceByLabel(STATE_LABEL);
  if (device === undefined) return skipped(`no volume labelled ${STATE_LABEL}: the last good config is kept in RAM only`);
  try {
    await run.system.mkdir(NODE_PATHS.stateDir, 0o700);
    await run.system.mountReadWrite(device, NODE_PATHS.stateDir);
  } catch (error) {
    return failed(`${device} cannot be mounted read-write at ${NODE_PATHS.stateDir}: ${oneLine(error)}; the last good config is kept in RAM only`);
  }
  run.lastGoodStore = 'state-volume';
  return ok(`${device} mounted read-write at ${NODE_PATHS.stateDir}`);
}

// ---------- step 3: hostname, interfaces, SSH, networking ----------

async function setHostname(run: Run, name: string): Promise<void> {
  await run.system.writeFile('/etc/hostname', `${name}\n`, 0o644);
  const hosts = (await run.system.readFile('/etc/hosts'))?.toString('utf8') ?? '127.0.0.1\tlocalhost\n';
  const kept = hosts.split('\n').filter((line) => line !== '' && !line.endsWith('# psyopsOS hostname'));
  await run.system.writeFile('/etc/hosts', `${[...kept, `127.0.1.1\t${name}\t# psyopsOS hostname`].join('\n')}\n`, 0o644);
  await run.system.setHostname(name);
  run.hostname = name;
}

async function networkStep(run: Run): Promise<Outcome> {
  const notes: string[] = [];
  const problems: string[] = [];
  const volume = run.volume;
  await setHostname(run, volume?.nodename ?? UNCONFIGURED_HOSTNAME);

  let interfaces = volume?.interfaces;
  if (volume?.mactab) {
    await run.system.writeFile('/etc/mactab', volume.mactab.map((e) => `${e.name} ${e.mac}`).join('\n') + '\n', 0o644);
    try {
      await run.system.renameInterfaces();
      notes.push(`interfaces renamed (${volume.mactab.map((e) => e.name).join(', ')})`);
    } catch (error) {
      problems.push(`renaming interfaces failed: ${oneLine(error)}`);
    }
  }
  if (interfaces === undefined) {
    // DHCP fallback: on psy0 when the mactab named it, else on the first network card.
    const card = volume?.mactab ? NODE_INTERFACE : (await run.system.listInterfaces())[0]?.name;
    interfaces = `auto lo\niface lo inet loopback\n${card ? `\nauto ${card}\niface ${card} inet dhcp\n` : ''}`;
    notes.push(card ? `DHCP fallback on ${card}` : 'no network card found');
  }
  await run.system.writeFile('/etc/network/interfaces', interfaces, 0o644);

  if (volume?.sshHostKey) {
    await run.system.writeFile('/etc/ssh/ssh_host_ed25519_key', volume.sshHostKey.privateKey, 0o600);
    await run.system.writeFile('/etc/ssh/ssh_host_ed25519_key.pub', `${volume.sshHostKey.publicKey}\n`, 0o644);
  }

  try {
    await run.system.bringUpNetworking();
    notes.push('networking up');
  } catch (error) {
    problems.push(`networking failed: ${oneLine(error)}`);
  }
  if (await run.system.hasService('sshd')) {
    try {
      await run.system.startService('sshd');
      notes.push('sshd started');
    } catch (error) {
      problems.push(`sshd failed: ${oneLine(error)}`);
    }
  } else notes.push('sshd not installed');
  return problems.length > 0 ? failed([...problems, ...notes].join('; ')) : ok(notes.join('; '));
}

// ---------- step 4: psynet ----------

async function fetchSigned(run: Run, path: string): Promise<SignedDocument | undefined> {
  const json = await run.site!.get(path);
  if (json === undefined) return undefined;
  const signature = await run.site!.get(`${path}.minisig`);
  if (signature === undefined) throw new NodeConfigRejectedError(`${path} has no signature (${path}.minisig) on the site`);
  return { json, signature: signature.toString('utf8') };
}

async function writeNebulaConfig(run: Run, firewall: NodeConfig['firewall']): Promise<void> {
  const dir = NODE_PATHS.nebulaDir;
  const pki = { ca: `${dir}/ca.crt`, cert: `${dir}/host.crt`, key: `${dir}/host.key` };
  await run.system.writeFile(`${dir}/config.yml`, nodeNebulaConfig({ pki, lighthouses: run.nebula!.lighthouses, firewall }), 0o644);
  run.nebula!.firewall = JSON.stringify(firewall);
}

async function psynetStep(run: Run): Promise<Outcome> {
  const psynet = run.volume?.psynet;
  if (!run.volume) return skipped('no secret volume');
  if (!psynet) return skipped(`no ${SECRET_FILES.psynetCert} on the secret volume`);
  if (!psynet.ca) return failed(`no ${SECRET_FILES.psynetCa} on the secret volume`);
  const notes: string[] = [];
  let lighthouses: Lighthouse[] = [];
  if (!run.site) notes.push('no site URL: no lighthouses');
  else {
    try {
      const document = await fetchSigned(run, 'psynet/lighthouses.json');
      if (document === undefined) notes.push('the site publishes no lighthouses');
      else {
        const parsed = checkLighthouses(verifySigned(document, 'psynet/lighthouses.json', run.volume.minisignPublicKey));
        if (!parsed.ok) throw new NodeConfigRejectedError(`psynet/lighthouses.json does not match its schema (${parsed.error})`);
        lighthouses = parsed.value.lighthouses;
        notes.push(`${lighthouses.length} lighthouse(s)`);
      }
    } catch (error) {
      notes.push(`no lighthouses: ${oneLine(error)}`);
    }
  }
  const dir = NODE_PATHS.nebulaDir;
  await run.system.mkdir(dir, 0o700);
  await run.system.writeFile(`${dir}/ca.crt`, psynet.ca, 0o644);
  await run.system.writeFile(`${dir}/host.crt`, psynet.cert, 0o644);
  await run.system.writeFile(`${dir}/host.key`, psynet.key, 0o600);
  run.nebula = { lighthouses, firewall: '', started: false };
  await writeNebulaConfig(run, run.lastGood?.config.firewall ?? []);
  if (!(await run.system.hasCommand('nebula')) || !(await run.system.hasService('nebula'))) return skipped(`nebula not installed (config written; ${notes.join('; ')})`);
  try {
    await run.system.startService('nebula');
    run.nebula.started = true;
  } catch (error) {
    return failed(`nebula failed to start: ${oneLine(error)}`);
  }
  return ok(`nebula started; ${notes.join('; ')}`);
}

// ---------- step 5: the node config ----------

async function readLastGood(run: Run): Promise<void> {
  const json = await run.system.readFile(NODE_PATHS.lastGoodConfig);
  const signature = await run.system.readFile(`${NODE_PATHS.lastGoodConfig}.minisig`);
  if (!json || !signature || !run.volume) return;
  const path = `nodes/${run.volume.nodename}.json`;
  try {
    const document = { json, signature: signature.toString('utf8') };
    run.lastGood = { config: parseNodeConfig(verifySigned(document, path, run.volume.minisignPublicKey), run.volume.nodename, path), document };
  } catch (error) {
    await run.log.line(`ignoring the stored last good config: ${oneLine(error)}`);
  }
}

/** Applies a verified config; returns what did not work (secrets never appear in it). */
async function applyConfig(run: Run, config: NodeConfig): Promise<string[]> {
  const problems: string[] = [];
  if (config.hostname !== run.hostname) await setHostname(run, config.hostname);
  for (const file of config.files) {
    try {
      const data = typeof file.content === 'string' ? file.content : decryptSecret(run, file.content.age);
      await run.system.writeFile(file.path, data, Number.parseInt(file.mode, 8));
    } catch (error) {
      problems.push(`file ${file.path}: ${oneLine(error)}`);
    }
  }
  if (config.packages.length > 0) {
    if (!(await run.system.hasCommand('apk'))) problems.push(`apk is not installed: cannot add ${config.packages.join(' ')}`);
    else {
      const result = await run.system.run('apk', ['add', '--no-progress', ...config.packages], 300_000);
      if (result.exitCode !== 0) problems.push(`apk add failed (exit ${result.exitCode}): ${result.stderr.trim().split('\n').at(-1) ?? ''}`);
    }
  }
  for (const service of config.services) {
    if (!(await run.system.hasService(service))) {
      problems.push(`service ${service} is not installed`);
      continue;
    }
    try {
      await run.system.startService(service);
    } catch (error) {
      problems.push(`service ${service}: ${oneLine(error)}`);
    }
  }
  if (run.nebula && run.nebula.firewall !== JSON.stringify(config.firewall)) {
    await writeNebulaConfig(run, config.firewall);
    if (run.nebula.started) await run.system.restartService('nebula').catch((error: unknown) => problems.push(`nebula restart: ${oneLine(error)}`));
  }
  return problems;
}

async function configStep(run: Run): Promise<Outcome> {
  if (!run.volume) return skipped('no secret volume: no key to verify a config with');
  const nodename = run.volume.nodename;
  const path = `nodes/${nodename}.json`;
  let fresh: { config: NodeConfig; document: SignedDocument } | undefined;
  let refusal: string | undefined;
  if (!run.site) {
    refusal = `no site URL (${NODE_PATHS.siteUrl} in the image, or site.url on the secret volume)`;
  } else {
    try {
      const document = await fetchSigned(run, path);
      if (document === undefined) refusal = `the site has no ${path}`;
      else {
        const config = parseNodeConfig(verifySigned(document, path, run.volume.minisignPublicKey), nodename, path);
        if (run.lastGood && config.version < run.lastGood.config.version) {
          throw new NodeConfigRejectedError(`${path}: version ${config.version} is older than the last good version ${run.lastGood.config.version}`);
        }
        fresh = { config, document };
        run.configReport = { version: config.version, source: 'site', signature: 'verified' };
      }
    } catch (error) {
      refusal = oneLine(error);
      if (error instanceof NodeConfigRejectedError) run.configReport = { version: null, source: null, signature: 'refused', reason: refusal };
    }
  }
  const chosen = fresh ?? run.lastGood;
  if (!chosen) {
    run.configReport = { ...run.configReport, reason: refusal ?? 'no config' };
    return failed(`${refusal}; no last good config`);
  }
  const source = fresh ? 'site' : 'last-good';
  const problems = await applyConfig(run, chosen.config);
  run.applied = { config: chosen.config, source };
  run.configReport = { ...run.configReport, version: chosen.config.version, source, ...(refusal ? { reason: refusal } : {}) };
  if (fresh) {
    await run.system.mkdir(NODE_PATHS.stateDir, 0o700);
    await run.system.writeFile(`${NODE_PATHS.lastGoodConfig}.minisig`, fresh.document.signature, 0o600);
    await run.system.writeFile(NODE_PATHS.lastGoodConfig, fresh.document.json, 0o600);
  }
  const applied = `version ${chosen.config.version} applied${fresh ? ' (signature verified)' : ` (last good${run.lastGoodStore === 'state-volume' ? ' from the state volume' : ''}: ${refusal})`}`;
  return fresh && problems.length === 0 ? ok(applied) : failed([applied, ...problems].join('; '));
}

// ---------- step 6: k3s ----------

async function k3sStep(run: Run): Promise<Outcome> {
  const k3s = run.applied?.config.k3s;
  if (!k3s) {
    run.k3s = 'not-configured';
    return skipped('k3s is not configured');
  }
  const token = decryptSecret(run, k3s.token.age);
  const config = { token, ...(k3s.serverUrl !== undefined ? { server: k3s.serverUrl } : {}), 'node-name': run.hostname };
  await run.system.writeFile(NODE_PATHS.k3sConfig, `${JSON.stringify(config, null, 2)}\n`, 0o600);
  await run.system.writeFile(NODE_PATHS.k3sConfD, `# written by psyops nodeboot\nK3S_EXEC="${k3s.role}"\n`, 0o644);
  if (!(await run.system.hasCommand('k3s')) || !(await run.system.hasService('k3s'))) {
    run.k3s = 'not-installed';
    return skipped(`k3s is not installed (config for a ${k3s.role} written)`);
  }
  try {
    await run.system.startService('k3s');
  } catch (error) {
    run.k3s = 'failed';
    return failed(`k3s failed to start: ${oneLine(error)}`);
  }
  run.k3s = 'started';
  return ok(`k3s ${k3s.role} started`);
}

// ---------- the program ----------

const STEPS: [StepName, string, (run: Run) => Promise<Outcome>][] = [
  ['secret', 'secret volume', secretStep],
  ['state', 'state volume', stateStep],
  ['network', 'hostname, interfaces, SSH, networking', networkStep],
  ['psynet', 'psynet (Nebula)', psynetStep],
  ['config', 'node config from the site', configStep],
  ['k3s', 'k3s', k3sStep],
];

/**
 * postboot: individuates the node at boot, in order: (1) exits if this boot already finished,
 * (2) the secret volume, then the psyops-state volume when there is one (the last good config's
 * home across reboots), (3) hostname, interfaces, SSH host key, networking, (4) psynet,
 * (5) the signed node config, (6) k3s, (7) status.json, the finished marker and the final line
 * `psyopsOS: postboot finished status=… hostname=… config=… secret=…`. Never throws for a
 * failing step: each is recorded and the rest go on.
 */
export async function runPostboot(system: NodeSystem, options: PostbootOptions = {}): Promise<PostbootResult> {
  if (await system.exists(NODE_PATHS.finishedMarker)) {
    system.console(`psyopsOS: postboot already finished this boot (see ${NODE_PATHS.status})`);
    return { status: null, exitCode: POSTBOOT_EXIT.ok };
  }
  const startedAt = system.now();
  const log = new PostbootLog(system, startedAt);
  const run: Run = {
    system,
    log,
    options: { siteAttempts: 4, siteRetryDelayMs: 1000, fetchTimeoutMs: 10_000, secretWaitMs: 5000, secretPollMs: 200, printStatus: false, startupMs: -1, ...options },
    secret: 'missing',
    hostname: UNCONFIGURED_HOSTNAME,
    configReport: { version: null, source: null, signature: 'not-fetched' },
    lastGoodStore: 'memory',
    k3s: 'not-configured',
  };
  await system.mkdir(NODE_PATHS.logDir, 0o755);
  await log.line(`postboot started (log ${log.path})`);
  const steps: StepStatus[] = [];
  for (const [name, title, step] of STEPS) {
    const began = system.now();
    let outcome: Outcome;
    try {
      outcome = await step(run);
    } catch (error) {
      outcome = failed(oneLine(error));
    }
    if (name === 'state') await readLastGood(run);
    steps.push({ name, result: outcome.result, ...(outcome.reason ? { reason: outcome.reason } : {}), ms: system.now() - began });
    await log.line(`${title}: ${outcome.result}${outcome.reason ? ` (${outcome.reason})` : ''}`);
  }

  const status: NodeStatus['status'] = run.secret !== 'mounted-ro' ? 'failed' : steps.some((s) => s.result === 'failed') ? 'degraded' : 'ok';
  const finishedAt = system.now();
  const report: NodeStatus = {
    format: 'psyops-node-status/1',
    status,
    hostname: run.hostname,
    secret: run.secret,
    siteUrl: run.site?.baseUrl ?? null,
    config: run.configReport,
    k3s: run.k3s,
    lastGood: run.lastGoodStore,
    steps,
    startedAt: iso(startedAt),
    finishedAt: iso(finishedAt),
    durationMs: finishedAt - startedAt,
    ...(run.options.startupMs >= 0 ? { startupMs: run.options.startupMs } : {}),
  };
  await system.mkdir('/etc/psyopsOS', 0o755);
  await system.writeFile(NODE_PATHS.status, `${JSON.stringify(report, null, 2)}\n`, 0o644);
  await system.mkdir(posix.dirname(NODE_PATHS.finishedMarker), 0o755);
  await system.writeFile(NODE_PATHS.finishedMarker, `${report.finishedAt} ${status}\n`, 0o644);
  await log.line(`finished: ${status} in ${report.durationMs} ms`);
  if (run.options.printStatus) system.console(`psyopsOS: status ${JSON.stringify(report)}`);
  system.console(
    `psyopsOS: postboot finished status=${status} hostname=${run.hostname} config=${run.configReport.version ?? 'none'} secret=${run.secret}`,
  );
  return { status: report, exitCode: POSTBOOT_EXIT[status] };
}
