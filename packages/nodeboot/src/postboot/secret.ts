/** Step 2: the psyops-secret volume, mounted read-only and validated; the node's identity comes from it. */
import { posix } from 'node:path';
import type { PostbootOptions } from '../postboot.js';
import { SECRET_FILES, SECRET_LABEL, parseSiteUrl, readSecretVolume, type SecretVolume } from '../secret-volume.js';
import type { NodeStatus } from '../status.js';
import { NODE_PATHS, failed, ok, oneLine, type Outcome, type StepContext } from './context.js';

export interface SecretFindings {
  secret: NodeStatus['secret'];
  /** The validated volume, when it was mounted and every file on it is usable. */
  volume?: SecretVolume;
  /** The site this node configures itself from: the volume's site.url, else the image's. */
  siteUrl?: string;
}

type SecretWait = Required<Pick<PostbootOptions, 'secretWaitMs' | 'secretPollMs'>>;

async function findSecretDevice({ system }: StepContext, wait: SecretWait): Promise<string | undefined> {
  // Counted, not timed against the clock: the wait stays bounded whatever sleep() does.
  for (let waited = 0; ; waited += wait.secretPollMs) {
    const device = await system.findDeviceByLabel(SECRET_LABEL);
    if (device !== undefined || waited >= wait.secretWaitMs) return device;
    await system.sleep(wait.secretPollMs);
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

/** The site URL, or why the image's is not used (a malformed or credential-carrying one: reported in the step, never echoed). */
async function siteUrlFor({ system, log }: StepContext, volume: SecretVolume): Promise<{ siteUrl?: string; refusal?: string }> {
  if (volume.siteUrl !== undefined) return { siteUrl: volume.siteUrl };
  const imageSiteUrl = (await system.readFile(NODE_PATHS.siteUrl))?.toString('utf8').split('\n')[0]?.trim();
  if (!imageSiteUrl) return {};
  try {
    return { siteUrl: parseSiteUrl(imageSiteUrl, NODE_PATHS.siteUrl) };
  } catch (error) {
    const refusal = `ignoring ${NODE_PATHS.siteUrl}: ${oneLine(error)}`;
    await log.line(refusal);
    return { refusal };
  }
}

/** TESTONLYNOPROD: a uid-0 `toor` user with a blank password, for development consoles only. */
async function addToorUser({ system }: StepContext): Promise<void> {
  const passwd = (await system.readFile('/etc/passwd'))?.toString('utf8') ?? '';
  if (/^toor:/m.test(passwd)) return;
  const shadow = (await system.readFile('/etc/shadow'))?.toString('utf8');
  const withNewline = (text: string) => (text === '' || text.endsWith('\n') ? text : `${text}\n`);
  await system.writeFile('/etc/passwd', `${withNewline(passwd)}toor:${shadow !== undefined ? 'x' : ''}:0:0:TESTONLYNOPROD:/root:/bin/sh\n`, 0o644);
  if (shadow !== undefined) await system.writeFile('/etc/shadow', `${withNewline(shadow)}toor::0:0:99999:7:::\n`, 0o600);
}

/** What the rest of the node reads from the volume: psyops-secret.env, and the toor user when TESTONLYNOPROD asks. */
async function exportSecretVolume(context: StepContext, volume: SecretVolume, siteUrl: string | undefined): Promise<void> {
  await context.system.mkdir('/etc/psyopsOS', 0o755);
  await context.system.writeFile(NODE_PATHS.secretEnv, secretEnv(volume, siteUrl), 0o644);
  if (volume.unknownFiles.length > 0) await context.log.line(`secret volume: ignoring unknown file(s) ${volume.unknownFiles.join(', ')}`);
  if (volume.testonlyToor) {
    await addToorUser(context);
    for (let i = 0; i < 3; i++)
      context.system.console('psyopsOS: WARNING: TESTONLYNOPROD.env: user toor has a BLANK PASSWORD. Never use this secret volume in production.');
  }
}

export async function secretStep(context: StepContext, wait: SecretWait): Promise<Outcome & SecretFindings> {
  const { system } = context;
  const device = await findSecretDevice(context, wait);
  if (device === undefined) return { ...failed(`no volume labelled ${SECRET_LABEL} (waited ${wait.secretWaitMs} ms)`), secret: 'missing' };
  await system.mkdir(NODE_PATHS.secretParent, 0o700);
  await system.mkdir(NODE_PATHS.secretMount, 0o700);
  try {
    await system.mountReadOnly(device, NODE_PATHS.secretMount);
  } catch (error) {
    return { ...failed(`${device} cannot be mounted read-only: ${oneLine(error)}`), secret: 'missing' };
  }
  let volume: SecretVolume;
  try {
    volume = await readSecretVolume(system.pathOnHost(NODE_PATHS.secretMount));
  } catch (error) {
    return { ...failed(`${device}: ${oneLine(error)}`), secret: 'invalid' };
  }
  // From here on the volume is valid: a failure below fails the step, and the later steps still use the volume.
  let siteUrl: string | undefined;
  let refusal: string | undefined;
  try {
    ({ siteUrl, refusal } = await siteUrlFor(context, volume));
    await exportSecretVolume(context, volume, siteUrl);
  } catch (error) {
    return { ...failed(oneLine(error)), secret: 'mounted-ro', volume, siteUrl };
  }
  return {
    ...ok(`${device} mounted read-only at ${NODE_PATHS.secretMount}${volume.testonlyToor ? '; TESTONLY toor user added' : ''}${refusal ? `; ${refusal}` : ''}`),
    secret: 'mounted-ro',
    volume,
    siteUrl,
  };
}
