/**
 * The embedded default image: what `psyops build-iso` builds outside a workspace, from a local
 * APK repository that wraps this host's Debian kernel, busybox and Node.js — no network, no
 * configuration, so a newcomer sees psyopsOS boot before setting anything up.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPackage, indexRepository, nodebootSpec, readSigningKey } from '@psyops/apkpkg';
import { readSecretKeyFile, type SecretKey } from '@psyops/signing';
import type { BuildIsoOptions } from '@psyops/imagebuild';
import { writeNewKeyPair } from './commands/keygen.js';
import { version } from '../package.json';

/** Packages of the default root: busybox init, busybox, Node.js, and nodeboot (run by the postboot hook). */
export const DEFAULT_WORLD = ['host-baselayout', 'busybox', 'nodejs', 'psyops-nodeboot'];

export interface DefaultImage {
  secretKey: SecretKey;
  build: Omit<BuildIsoOptions, 'secretKey' | 'onProgress' | 'outDir'>;
}

/**
 * Makes sure `home` holds the host repository, the project repository (psyops-nodeboot from this
 * psyops's own bundle) and a signing key, building what is missing or stale.
 */
export async function prepareDefaultImage(home: string, say: (line: string) => void, epoch?: number): Promise<DefaultImage> {
  const { buildHostRepository, isHostRepositoryCurrent } = await import('@psyops/imagebuild');
  const hostRepo = join(home, 'host-repo');
  const keysDir = join(hostRepo, 'keys');
  const stamp = epoch ?? Math.floor(Date.now() / 1000);
  if (!(await isHostRepositoryCurrent(hostRepo))) {
    say(`building the host APK repository in ${hostRepo} (again only when this host's kernel, busybox or Node.js change)`);
    // Reused until the host changes: its time stamps are those of its build (or SOURCE_DATE_EPOCH).
    await buildHostRepository({ outDir: hostRepo, mtime: stamp, onProgress: say });
  }
  const projectRepo = join(home, 'project-repo');
  await ensureProjectRepository(projectRepo, keysDir, stamp, say);
  // A throwaway, unencrypted key: the default image is for trying psyopsOS out, not for nodes.
  const secretKeyPath = join(home, 'keys', 'minisign.key');
  if (!existsSync(secretKeyPath)) {
    await writeNewKeyPair({ publicKeyPath: join(home, 'keys', 'minisign.pub'), secretKeyPath, password: null, comment: 'psyops embedded default image key (throwaway)' });
  }
  const secretKey = await readSecretKeyFile(secretKeyPath, () => Promise.resolve(''));
  return {
    secretKey,
    build: {
      flavor: 'pc',
      world: DEFAULT_WORLD,
      kernel: 'debian',
      initramfsPackages: ['busybox'],
      kernelCmdline: 'console=tty0 console=ttyS0,115200',
      hostname: 'psyopsOS-bootstrap',
      repositories: [
        { url: projectRepo, keysDir },
        { url: hostRepo, keysDir },
      ],
      cacheDir: join(home, 'cache'),
    },
  };
}

/** psyops-nodeboot from the installed @psyops/nodeboot bundle, rebuilt when the bundle changes. */
async function ensureProjectRepository(dir: string, keysDir: string, epoch: number, say: (line: string) => void): Promise<void> {
  const bundle = await readFile(fileURLToPath(import.meta.resolve('@psyops/nodeboot/nodeboot.mjs')));
  const bundleHash = createHash('sha256').update(bundle).digest('hex');
  const stampFile = join(dir, 'bundle.sha256');
  if (existsSync(stampFile) && (await readFile(stampFile, 'utf8')) === bundleHash) return;
  say(`packaging psyops-nodeboot into ${dir}`);
  const keyFile = (await readdir(keysDir)).find((name) => name.endsWith('.rsa'));
  if (!keyFile) throw new Error(`no APK signing key (*.rsa) in ${keysDir}`);
  const key = await readSigningKey(join(keysDir, keyFile));
  const temp = `${dir}.tmp-${randomBytes(4).toString('hex')}`;
  try {
    await mkdir(join(temp, 'x86_64'), { recursive: true });
    const built = await buildPackage(await nodebootSpec({ version: `${version}-r0`, arch: 'noarch', bundle }), { sourceDateEpoch: epoch, key });
    await writeFile(join(temp, 'x86_64', built.fileName), built.bytes);
    await indexRepository(temp, { sourceDateEpoch: epoch, key, description: 'psyops project packages', arches: ['x86_64'] });
    await writeFile(join(temp, 'bundle.sha256'), bundleHash);
    await rm(dir, { recursive: true, force: true });
    await rename(temp, dir);
  } catch (error) {
    await rm(temp, { recursive: true, force: true });
    throw error;
  }
}
