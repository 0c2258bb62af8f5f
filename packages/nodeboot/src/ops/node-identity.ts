/**
 * What a node command needs from this boot: the secret volume postboot mounted (its minisign key
 * checks everything the site serves) and the site URL postboot used.
 */
import { decodePublicKey, type PublicKey } from '@psyops/signing';
import { NODE_PATHS } from '../postboot/context.js';
import { SECRET_FILES, parseSiteUrl, readSecretVolume, type SecretVolume } from '../secret-volume.js';
import type { NodeSystem } from '../system.js';
import { ApplyError, NoSecretVolumeError } from './errors.js';

/** The mounted secret volume, validated; NoSecretVolumeError when postboot did not mount a usable one. */
export async function mountedSecretVolume(system: NodeSystem): Promise<SecretVolume> {
  if (!(await system.exists(`${NODE_PATHS.secretMount}/${SECRET_FILES.nodename}`)))
    throw new NoSecretVolumeError(`no secret volume at ${NODE_PATHS.secretMount} (postboot mounts it at boot): no key to verify the site with`);
  try {
    return await readSecretVolume(system.pathOnHost(NODE_PATHS.secretMount));
  } catch (error) {
    throw new NoSecretVolumeError(`the secret volume at ${NODE_PATHS.secretMount} is not usable: ${(error as Error).message}`);
  }
}

/** The site URL as postboot chooses it: the volume's site.url, else the image's /etc/psyopsOS/site.url. */
export async function siteUrlOf(system: NodeSystem, volume: SecretVolume): Promise<string> {
  if (volume.siteUrl !== undefined) return volume.siteUrl;
  const line = (await system.readFile(NODE_PATHS.siteUrl))?.toString('utf8').split('\n')[0]?.trim();
  if (!line) throw new ApplyError(`no site URL (${NODE_PATHS.siteUrl} in the image, or site.url on the secret volume)`);
  try {
    return parseSiteUrl(line, NODE_PATHS.siteUrl);
  } catch (error) {
    throw new ApplyError((error as Error).message);
  }
}

/** Only the secret volume's minisign key (write-bootmedia needs nothing else from it). */
export async function secretMinisignKey(system: NodeSystem): Promise<PublicKey> {
  const path = `${NODE_PATHS.secretMount}/${SECRET_FILES.minisignPublicKey}`;
  const text = (await system.readFile(path))?.toString('utf8');
  if (text === undefined) throw new NoSecretVolumeError(`no ${path}: the secret volume is not mounted (postboot mounts it at boot), no key to verify with`);
  try {
    return decodePublicKey(text, path);
  } catch (error) {
    throw new NoSecretVolumeError(`${path}: ${(error as Error).message}`);
  }
}
