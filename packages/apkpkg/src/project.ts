/**
 * Package specs for psyopsOS's own packages, filled from workspace values: `psyopsOS-base` (apk
 * repository + key, root password hash and SSH key setup, boot media writer, telepathy status
 * service) and `psyops-nodeboot` (the bundled nodeboot program). Both run on Alpine with OpenRC and
 * on the embedded default image, whose busybox init has OpenRC's openrc-run and rc-update.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fileAccessError } from '@psyops/core';
import { InvalidSpecError } from './errors.js';
import type { FileSpec, PackageSpec } from './spec.js';
import { isValidVersion } from './version.js';

/**
 * Where the scripts shipped with this package live (`project/` in the package). Resolved through
 * the package name, not import.meta.url: the psyops CLI bundles this code into its own file.
 */
function assetsDir(): string {
  try {
    return join(dirname(createRequire(import.meta.url).resolve('@psyops/apkpkg/package.json')), 'project');
  } catch {
    return fileURLToPath(new URL('../project/', import.meta.url));
  }
}

async function asset(path: string): Promise<string> {
  const full = join(assetsDir(), path);
  try {
    return await readFile(full, 'utf8');
  } catch (error) {
    throw fileAccessError(error, full, 'psyops package asset');
  }
}

export interface ProjectPackageCommon {
  /** `pkgver-rN`; the original psyopsOS used `1.0.<unix seconds>-r0`. */
  version: string;
  /** Target arch (`x86_64`, `aarch64`). */
  arch: string;
  url?: string;
  maintainer?: string;
}

export interface PsyopsBaseOptions extends ProjectPackageCommon {
  /** Line for /etc/apk/repositories, e.g. `https://psyops.example.org/apk/psyopsOS`; none (the embedded default image has no site): left alone. */
  repositoryUrl?: string;
  /** File name of the repository's public key (`/etc/apk/keys/<name>`), and its PEM text. */
  apkKeyName: string;
  apkPublicKeyPem: string;
  /** crypt(3) hash (`$6$…`) for root; none: the root password is left alone. Installed 0600. */
  rootPasswordHash?: string;
  /** authorized_keys lines for root; none: left alone. */
  sshAuthorizedKeys?: string;
}

function checkCommon(options: ProjectPackageCommon): void {
  if (!isValidVersion(options.version)) throw new InvalidSpecError(`invalid version "${options.version}" (expected e.g. 1.0.1700000000-r0)`);
  if (!/^[a-z0-9_]+$/.test(options.arch)) throw new InvalidSpecError(`invalid arch "${options.arch}"`);
}

/** The `psyopsOS-base` spec: everything inline, so it builds without a spec file. */
export async function psyopsBaseSpec(options: PsyopsBaseOptions): Promise<PackageSpec> {
  checkCommon(options);
  if (!/^[A-Za-z0-9@._+-]+\.pub$/.test(options.apkKeyName)) throw new InvalidSpecError(`invalid apk key file name "${options.apkKeyName}"`);
  if (!options.apkPublicKeyPem.includes('-----BEGIN PUBLIC KEY-----')) throw new InvalidSpecError(`${options.apkKeyName} is not a PEM public key`);
  const { repositoryUrl } = options;
  if (repositoryUrl !== undefined && (/\s/.test(repositoryUrl) || repositoryUrl === ''))
    throw new InvalidSpecError(`invalid repository URL "${repositoryUrl}"`);
  const hash = options.rootPasswordHash?.trim();
  if (hash !== undefined && !/^\$[0-9a-z]+\$[^\s:]+$/.test(hash))
    throw new InvalidSpecError('the root password hash must be one crypt(3) hash such as $6$salt$…, not a password');
  const files: FileSpec[] = [
    { path: `etc/apk/keys/${options.apkKeyName}`, mode: '0644', content: options.apkPublicKeyPem },
    { path: 'etc/psyopsOS', type: 'dir', mode: '0700' },
    { path: 'usr/sbin/psyopsOS-setup', mode: '0755', content: await asset('psyopsOS-base/psyopsOS-setup') },
    { path: 'usr/sbin/psyopsOS-write-bootmedia', mode: '0755', content: await asset('psyopsOS-base/psyopsOS-write-bootmedia') },
    { path: 'usr/lib/psyopsOS/telepathy.mjs', mode: '0755', content: await asset('psyopsOS-base/telepathy.mjs') },
    { path: 'etc/init.d/telepathy', mode: '0755', content: await asset('psyopsOS-base/telepathy.initd') },
    { path: 'etc/telepathy/plugins.d', type: 'dir', mode: '0755' },
  ];
  if (repositoryUrl !== undefined) files.push({ path: 'etc/psyopsOS/repository', mode: '0644', content: `${repositoryUrl}\n` });
  if (hash) files.push({ path: 'etc/psyopsOS/root-password.hash', mode: '0600', content: `${hash}\n` });
  if (options.sshAuthorizedKeys?.trim()) files.push({ path: 'etc/psyopsOS/authorized_keys', mode: '0600', content: `${options.sshAuthorizedKeys.trim()}\n` });
  const postInstall = await asset('psyopsOS-base/post-install');
  return {
    ...projectPackage('psyopsOS-base', 'psyopsOS base: apk repository and key, root access setup, boot media writer, telepathy status', options),
    // telepathy's init script runs under openrc-run and post-install enables it with rc-update: Alpine's openrc
    // provides both commands, and so does the embedded default image's host-baselayout.
    depends: ['nodejs', 'cmd:openrc-run', 'cmd:rc-update'],
    files,
    scripts: { 'post-install': { content: postInstall }, 'post-upgrade': { content: postInstall } },
  };
}

/** What every psyopsOS package spec shares: identity and licence. */
function projectPackage(name: string, description: string, options: ProjectPackageCommon) {
  return {
    name,
    version: options.version,
    arch: options.arch,
    description,
    url: options.url ?? 'https://github.com/mrled/psyops',
    license: 'MIT',
    ...(options.maintainer ? { maintainer: options.maintainer } : {}),
  };
}

export interface NodebootOptions extends ProjectPackageCommon {
  /** The bundled nodeboot program (one ESM file, no node_modules). */
  bundle: string | Buffer;
}

/**
 * The `psyops-nodeboot` spec: the bundle and `psyops-node`, its command on the node. No init
 * script and no install script: the image's boot hook runs `node /usr/lib/psyops/nodeboot.mjs
 * postboot`, so the package works under OpenRC and under the embedded default's busybox init alike.
 */
export async function nodebootSpec(options: NodebootOptions): Promise<PackageSpec> {
  checkCommon(options);
  return {
    ...projectPackage('psyops-nodeboot', 'psyops nodeboot: individuates a psyopsOS node at boot', options),
    depends: ['nodejs'],
    files: [
      { path: 'usr/lib/psyops/nodeboot.mjs', mode: '0755', contentBase64: Buffer.from(options.bundle).toString('base64') },
      { path: 'usr/sbin/psyops-node', mode: '0755', content: await asset('psyops-nodeboot/psyops-node') },
    ],
  };
}
