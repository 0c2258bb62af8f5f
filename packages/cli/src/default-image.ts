/**
 * The embedded default image: what `psyops build-iso` builds outside a workspace, from a local
 * APK repository that wraps this host's Debian kernel, busybox and Node.js — no network, no
 * configuration, so a newcomer sees psyopsOS boot before setting anything up.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
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
  const projectRepo = await projectRepository(home, keysDir, stamp, say);
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

/**
 * psyops-nodeboot from the installed @psyops/nodeboot bundle, in a repository cached like a build
 * stage (by the bundle's hash): made again only when the bundle changes. Returns its directory.
 */
async function projectRepository(home: string, keysDir: string, epoch: number, say: (line: string) => void): Promise<string> {
  const { runStage, ImageConfigError } = await import('@psyops/imagebuild');
  const bundle = await readFile(fileURLToPath(import.meta.resolve('@psyops/nodeboot/nodeboot.mjs')));
  const keyFile = (await readdir(keysDir)).find((name) => name.endsWith('.rsa'));
  if (!keyFile) throw new ImageConfigError(`no APK signing key (*.rsa) in ${keysDir}: delete ${dirname(keysDir)} to have the host repository built again`);
  // The host repository's key signs it too: a new key means a new repository.
  const inputs = { bundle: createHash('sha256').update(bundle).digest('hex'), version, key: keyFile };
  const { dir } = await runStage(home, 'project-repo', inputs, async (dir) => {
    say(`packaging psyops-nodeboot into ${dir}`);
    const key = await readSigningKey(join(keysDir, keyFile));
    await mkdir(join(dir, 'x86_64'));
    const built = await buildPackage(await nodebootSpec({ version: `${version}-r0`, arch: 'noarch', bundle }), { sourceDateEpoch: epoch, key });
    await writeFile(join(dir, 'x86_64', built.fileName), built.bytes);
    await indexRepository(dir, { sourceDateEpoch: epoch, key, description: 'psyops project packages', arches: ['x86_64'] });
  });
  return dir;
}
