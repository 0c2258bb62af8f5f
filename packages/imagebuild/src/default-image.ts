/**
 * The embedded default image: what `psyops build-iso` builds outside a workspace, from a local
 * APK repository that wraps this host's Debian kernel, busybox, OpenSSH and nebula and the pinned
 * Node.js, and psyops's own packages — no network, no configuration, so a newcomer sees psyopsOS
 * boot before setting anything up.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { buildPackage, indexRepository, nodebootSpec, psyopsBaseSpec, readSigningKey } from '@psyops/apkpkg';
import { writeFilesAtomically } from '@psyops/core';
import { encodePublicKey, encodeSecretKey, generateKeyPair, publicKeyOf, readSecretKeyFile, type SecretKey } from '@psyops/signing';
import type { BuildIsoOptions } from './build.js';
import { ImageConfigError } from './errors.js';
import { buildHostRepository, isHostRepositoryCurrent } from './hostrepo.js';
import { runStage } from './stage.js';

/**
 * Packages of the default root: busybox init, busybox, Node.js, OpenSSH, nebula, minisign, nodeboot (run by the postboot hook) and
 * psyopsOS-base (telepathy, root access setup, the boot media writer).
 */
const DEFAULT_WORLD = ['host-baselayout', 'busybox', 'nodejs', 'openssh', 'nebula', 'minisign', 'psyops-nodeboot', 'psyopsOS-base'];

export interface DefaultImageOptions {
  /** Holds the host repository, the project repository, the throwaway signing key and the cache. */
  home: string;
  /** The @psyops/nodeboot bundle (`nodeboot.mjs`), packaged as psyops-nodeboot. */
  nodebootBundle: Uint8Array;
  /** The version of psyops-nodeboot and psyopsOS-base (their package release is `-r0`). */
  nodebootVersion: string;
  /** Where the image is written. */
  outDir: string;
  /** Package and stage cache (default `<home>/cache`). */
  cacheDir?: string;
  /** Time stamps of the repositories built now (SOURCE_DATE_EPOCH; default: now). */
  mtime?: number;
  /** One line for each slow piece of work (the host repository, the nodeboot package). */
  onProgress?: (line: string) => void;
}

/**
 * Makes sure `home` holds the host repository, the project repository (psyops-nodeboot from the
 * given bundle, and psyopsOS-base) and a signing key, building what is missing or stale, and
 * returns the default image's build options.
 */
export async function prepareDefaultImage(options: DefaultImageOptions): Promise<BuildIsoOptions> {
  const { home } = options;
  const say = options.onProgress ?? (() => undefined);
  const hostRepo = join(home, 'host-repo');
  const keysDir = join(hostRepo, 'keys');
  const mtime = options.mtime ?? Math.floor(Date.now() / 1000);
  if (!(await isHostRepositoryCurrent(hostRepo))) {
    say(`building the host APK repository in ${hostRepo} (again only when this host's programs, psyops's assets or the pinned Node.js change)`);
    // Reused until the host changes: its time stamps are those of its build (or SOURCE_DATE_EPOCH).
    await buildHostRepository({ outDir: hostRepo, mtime, onProgress: say });
  }
  const projectRepo = await projectRepository({ ...options, keysDir, mtime, say });
  return {
    image: {
      flavor: 'pc',
      world: DEFAULT_WORLD,
      kernel: 'debian',
      initramfsPackages: ['busybox'],
      kernelCmdline: 'console=tty0 console=ttyS0,115200',
      hostname: 'psyopsOS-bootstrap',
      outDir: options.outDir,
    },
    repositories: [
      { url: projectRepo, keysDir },
      { url: hostRepo, keysDir },
    ],
    cacheDir: options.cacheDir ?? join(home, 'cache'),
    secretKey: await throwawayKey(join(home, 'keys')),
  };
}

/**
 * psyops-nodeboot from the bundle and psyopsOS-base, in a repository cached like a build stage (by
 * the hashes of their specs): made again only when one of them changes. Returns its directory.
 */
async function projectRepository(options: DefaultImageOptions & { keysDir: string; mtime: number; say: (line: string) => void }): Promise<string> {
  const { keysDir, mtime, nodebootBundle: bundle, nodebootVersion: version } = options;
  const keyFile = (await readdir(keysDir)).find((name) => name.endsWith('.rsa'));
  if (!keyFile) throw new ImageConfigError(`no APK signing key (*.rsa) in ${keysDir}: delete ${dirname(keysDir)} to have the host repository built again`);
  const publicKeyName = `${keyFile}.pub`;
  const specs = [
    await nodebootSpec({ version: `${version}-r0`, arch: 'noarch', bundle: Buffer.from(bundle) }),
    // No site, so no repository line; the key is the one that signs both repositories of the image.
    await psyopsBaseSpec({
      version: `${version}-r0`,
      arch: 'noarch',
      apkKeyName: publicKeyName,
      apkPublicKeyPem: await readFile(join(keysDir, publicKeyName), 'utf8'),
    }),
  ];
  // The specs hold every file's content; the host repository's key signs this one too: a new key means a new repository.
  const inputs = { specs: createHash('sha256').update(JSON.stringify(specs)).digest('hex'), key: keyFile };
  const { value } = await runStage({ dir: options.home }, 'project-repo', inputs, async (dir) => {
    options.say(`packaging ${specs.map((spec) => spec.name).join(' and ')} into ${dir}`);
    const key = await readSigningKey(join(keysDir, keyFile));
    await mkdir(join(dir, 'x86_64'));
    for (const spec of specs) {
      const built = await buildPackage(spec, { sourceDateEpoch: mtime, key });
      await writeFile(join(dir, 'x86_64', built.fileName), built.bytes);
    }
    await indexRepository(dir, { sourceDateEpoch: mtime, key, description: 'psyops project packages', arches: ['x86_64'] });
    return dir;
  });
  return value;
}

/** The default image's minisign key, made on first use: unencrypted, for trying psyopsOS out, not for nodes. */
async function throwawayKey(keysDir: string): Promise<SecretKey> {
  const secretKeyPath = join(keysDir, 'minisign.key');
  if (!existsSync(secretKeyPath)) {
    const key = generateKeyPair();
    await writeFilesAtomically([
      { path: secretKeyPath, data: await encodeSecretKey(key, { password: null, comment: 'psyops embedded default image key (throwaway)' }), mode: 0o600 },
      { path: join(keysDir, 'minisign.pub'), data: encodePublicKey(publicKeyOf(key)), mode: 0o644 },
    ]);
  }
  return readSecretKeyFile(secretKeyPath, () => Promise.resolve(''));
}
