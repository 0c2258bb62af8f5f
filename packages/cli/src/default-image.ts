/**
 * The embedded default image: what `psyops build-iso` builds outside a workspace, from a local
 * APK repository that wraps this host's Debian kernel, busybox and Node.js — no network, no
 * configuration, so a newcomer sees psyopsOS boot before setting anything up.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readSecretKeyFile, type SecretKey } from '@psyops/signing';
import type { BuildIsoOptions } from '@psyops/imagebuild';
import { writeNewKeyPair } from './commands/keygen.js';

/** Packages of the default root: busybox init, busybox, Node.js (for nodeboot). */
export const DEFAULT_WORLD = ['host-baselayout', 'busybox', 'nodejs'];

export interface DefaultImage {
  secretKey: SecretKey;
  build: Omit<BuildIsoOptions, 'secretKey' | 'onProgress' | 'outDir'>;
}

/** Makes sure `home` holds the host repository and a signing key (building them on first use). */
export async function prepareDefaultImage(home: string, say: (line: string) => void, epoch?: number): Promise<DefaultImage> {
  const { buildHostRepository } = await import('@psyops/imagebuild');
  const repoDir = join(home, 'host-repo');
  const keysDir = join(repoDir, 'keys');
  if (!existsSync(join(repoDir, 'x86_64', 'APKINDEX.tar.gz'))) {
    say(`building the host APK repository in ${repoDir} (once; later builds reuse it)`);
    // Built once and reused: its time stamps are those of its first build (or SOURCE_DATE_EPOCH).
    await buildHostRepository({ outDir: repoDir, mtime: epoch ?? Math.floor(Date.now() / 1000), onProgress: say });
  }
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
      repositories: [{ url: repoDir, keysDir }],
      cacheDir: join(home, 'cache'),
    },
  };
}
