/**
 * The apkovl: a gzip'ed tar that /init extracts over the fresh root, the equivalent of the
 * original genapkovl-psyopsOS.sh (hostname, world, sshd config, issue, motd, the postboot hook,
 * build info, runlevels, the secret mount point) plus the workspace overlay.
 */
import { createHash } from 'node:crypto';
import { lstat, readFile, readdir, readlink, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { tarHeader, tarPadding } from '@psyops/apkpkg/format';
import { writeGzipped } from './cpio.js';
import { ImageConfigError } from './errors.js';
import { runStage, type StageCache, type StageResult } from './stage.js';

export interface BuildInfo {
  /** ISO 8601 build date. */
  date: string;
  gitRevision: string | null;
  gitDirty: boolean | null;
}

export interface ApkovlOptions {
  hostname: string;
  world: readonly string[];
  release: string;
  /** The Alpine release the image is made from (`3.22.2`, `edge`, `none`), in /etc/psyopsOS/iso.json; absent leaves it out. */
  alpine?: string;
  arch: string;
  buildInfo: BuildInfo;
  /** The workspace overlay: its files, directories and symlinks with their modes; it wins over everything else. */
  overlayDir?: string;
  /** Files the build adds (e.g. keys); they win over the generated files. */
  extraFiles?: readonly { path: string; content: string | Uint8Array; mode: number }[];
  /** `etc/local.d/000-psyopsOS-postboot.start`, run by the booted system's init. */
  postbootHook: string;
  out: string;
  /** Seconds since the epoch, for every entry. */
  mtime: number;
  /** Once aborted, nothing is written (see writeGzipped). */
  signal?: AbortSignal | undefined;
}

type OverlayEntry = { type: 'dir'; mode: number } | { type: 'file'; mode: number; data: Uint8Array } | { type: 'symlink'; target: string };

/** OpenRC runlevels of the original apkovl (links to /etc/init.d/<service>). */
const RUNLEVELS: Readonly<Record<string, readonly string[]>> = {
  sysinit: ['devfs', 'dmesg', 'mdev', 'hwdrivers', 'modloop'],
  boot: ['hwclock', 'modules', 'sysctl', 'hostname', 'bootmisc', 'syslog'],
  default: ['local', 'sshd'],
  shutdown: ['mount-ro', 'killprocs', 'savecache'],
};

const POSTBOOT_HOOK_PATH = 'etc/local.d/000-psyopsOS-postboot.start';

const SSHD_CONFIG = `# psyopsOS default: key-only logins; root may log in with a key. The host key is the one
# postboot installs from the secret volume.
HostKey /etc/ssh/ssh_host_ed25519_key
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
Subsystem sftp internal-sftp
`;

/** A tree of archive entries keyed by relative path, keeping parents as directories. */
class Tree {
  readonly entries = new Map<string, OverlayEntry>();

  put(path: string, entry: OverlayEntry): void {
    assertRelativePath(path);
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      if (this.entries.get(parent)?.type !== 'dir') this.replace(parent, { type: 'dir', mode: 0o755 });
    }
    this.replace(path, entry);
  }

  private replace(path: string, entry: OverlayEntry): void {
    if (entry.type !== 'dir') for (const key of [...this.entries.keys()]) if (key.startsWith(`${path}/`)) this.entries.delete(key);
    this.entries.set(path, entry);
  }
}

function assertRelativePath(path: string): void {
  if (!path || path.startsWith('/') || path.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new ImageConfigError(`bad path for the apkovl: ${JSON.stringify(path)}`);
  }
}

function text(value: string): Uint8Array {
  return Buffer.from(value, 'utf8');
}

/** The generated files of the original genapkovl. */
function generatedTree(options: ApkovlOptions): Tree {
  if (!/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(options.hostname)) throw new ImageConfigError(`bad host name ${JSON.stringify(options.hostname)}`);
  for (const item of options.world) if (!/^\S+$/.test(item)) throw new ImageConfigError(`bad world entry ${JSON.stringify(item)}`);
  const tree = new Tree();
  const file = (path: string, content: string, mode = 0o644): void => tree.put(path, { type: 'file', mode, data: text(content) });
  file('etc/hostname', `${options.hostname}\n`);
  file('etc/apk/world', options.world.map((item) => `${item}\n`).join(''));
  file('etc/ssh/sshd_config', SSHD_CONFIG);
  file('etc/issue', `psyopsOS ${options.release} ${options.arch}\nKernel \\r on \\m (\\l)\n\n`);
  file('etc/motd', `psyopsOS ${options.release}: this system runs from RAM; changes are lost at reboot.\n`);
  file(POSTBOOT_HOOK_PATH, options.postbootHook, 0o755);
  const isoInfo = {
    generated: { iso8601: options.buildInfo.date, revision: options.buildInfo.gitRevision, dirty: options.buildInfo.gitDirty },
    release: options.release,
    ...(options.alpine !== undefined ? { alpine: options.alpine } : {}),
    arch: options.arch,
  };
  file('etc/psyopsOS/iso.json', `${JSON.stringify(isoInfo, null, 2)}\n`);
  for (const [level, services] of Object.entries(RUNLEVELS)) {
    tree.put(`etc/runlevels/${level}`, { type: 'dir', mode: 0o755 });
    for (const service of services) tree.put(`etc/runlevels/${level}/${service}`, { type: 'symlink', target: `/etc/init.d/${service}` });
  }
  tree.put('mnt/psyops-secret', { type: 'dir', mode: 0o700 });
  return tree;
}

/** Adds the overlay directory's entries; refuses devices, sockets and symlinks leaving the tree. */
async function addOverlay(tree: Tree, root: string, prefix = ''): Promise<void> {
  for (const name of (await readdir(join(root, prefix))).sort()) {
    const path = prefix ? `${prefix}/${name}` : name;
    const full = join(root, path);
    const stats = await lstat(full);
    if (stats.isDirectory()) {
      tree.put(path, { type: 'dir', mode: stats.mode & 0o7777 });
      await addOverlay(tree, root, path);
    } else if (stats.isFile()) {
      tree.put(path, { type: 'file', mode: stats.mode & 0o7777, data: await readFile(full) });
    } else if (stats.isSymbolicLink()) {
      const target = await readlink(full);
      // Absolute targets name files of the booted system; relative ones must stay inside the root.
      if (!target.startsWith('/') && posix.normalize(posix.join(posix.dirname(path), target)).startsWith('..')) {
        throw new ImageConfigError(`overlay symlink ${path} -> ${target} points outside the root`);
      }
      tree.put(path, { type: 'symlink', target });
    } else {
      throw new ImageConfigError(`overlay entry ${path} is not a file, directory or symlink`);
    }
  }
}

/** Builds `<hostname>.apkovl.tar.gz` content at `out`. */
export async function buildApkovl(options: ApkovlOptions): Promise<void> {
  const tree = generatedTree(options);
  for (const extra of options.extraFiles ?? []) {
    tree.put(extra.path, { type: 'file', mode: extra.mode, data: typeof extra.content === 'string' ? text(extra.content) : extra.content });
  }
  if (options.overlayDir !== undefined) {
    const stats = await lstat(options.overlayDir).catch(() => undefined);
    if (!stats?.isDirectory()) throw new ImageConfigError(`overlay ${options.overlayDir} is not a directory`);
    await addOverlay(tree, options.overlayDir);
  }
  await writeGzipped(options.out, ustarArchive(tree.entries, options.mtime), options.signal);
}

/** A POSIX ustar archive of the entries, sorted by path (parents first), owner root. */
function ustarArchive(entries: Map<string, OverlayEntry>, mtime: number): Buffer {
  const chunks: Buffer[] = [];
  const paths = [...entries.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const path of paths) {
    const entry = entries.get(path)!;
    const data = entry.type === 'file' ? Buffer.from(entry.data) : Buffer.alloc(0);
    const header = tarHeader({
      name: entry.type === 'dir' ? `${path}/` : path,
      mode: entry.type === 'symlink' ? 0o777 : entry.mode & 0o7777,
      size: data.length,
      mtime,
      type: entry.type,
      ...(entry.type === 'symlink' ? { linkname: entry.target } : {}),
      uname: 'root',
      gname: 'root',
      style: 'posix',
    });
    chunks.push(header, data, tarPadding(data.length));
  }
  chunks.push(Buffer.alloc(1024));
  return Buffer.concat(chunks);
}

/** The postboot hook: the console contract's "booted" line, then nodeboot (which ends with the "postboot" line). */
export function postbootHook(release: string): string {
  return `#!/bin/sh
# psyopsOS postboot hook (written by psyops build-iso): reports the boot on every console, then
# hands over to nodeboot, which prints the final "psyopsOS: postboot ..." line itself.
release='${release}'
# Shell built-ins only: every process is slow to start under emulation, and this is the boot's critical path.
root=
while read -r _ mountpoint type _; do
	[ "$mountpoint" = / ] && root=$type
done < /proc/mounts
consoles=
{ read -r consoles < /sys/class/tty/console/active; } 2>/dev/null
console() {
	for tty in $consoles; do
		[ -c "/dev/$tty" ] && echo "$*" > "/dev/$tty" 2>/dev/null
	done
	return 0
}
total=0
available=0
while read -r key kib _; do
	case "$key" in
		MemTotal:) total=$kib ;;
		MemAvailable:) available=$kib ;;
	esac
done < /proc/meminfo
console "psyopsOS: booted release=$release root=$root"
console "psyopsOS: memory used_kib=$((total - available)) total_kib=$total"
if [ -f /usr/lib/psyops/nodeboot.mjs ] && command -v node >/dev/null 2>&1; then
	exec node /usr/lib/psyops/nodeboot.mjs postboot --print-status
fi
console "psyopsOS: postboot skipped: nodeboot is not installed in this image"
`;
}

/** Paths, modes and content hashes of the overlay: what the apkovl depends on (null: no overlay directory). */
async function overlayFingerprint(dir: string | undefined): Promise<string[] | null> {
  if (
    !dir ||
    !(await stat(dir).then(
      (s) => s.isDirectory(),
      () => false,
    ))
  )
    return null;
  const entries: string[] = [];
  for (const name of (await readdir(dir, { recursive: true })).sort()) {
    const path = join(dir, name);
    const info = await stat(path);
    const hash = info.isFile()
      ? createHash('sha256')
          .update(await readFile(path))
          .digest('hex')
      : '';
    entries.push(`${name} ${info.mode.toString(8)} ${hash}`);
  }
  return entries;
}

export interface ApkovlStageOptions extends Pick<ApkovlOptions, 'hostname' | 'world' | 'release' | 'alpine' | 'arch' | 'buildInfo' | 'mtime'> {
  /** The workspace overlay directory; a missing one is no overlay. */
  overlay?: string;
  /** Base URL of the site nodes configure themselves from, written to /etc/psyopsOS/site.url. */
  siteUrl?: string;
}

/** The apkovl stage: `<stage>/<hostname>.apkovl.tar.gz` with the postboot hook of the release. */
export async function apkovlStage(cache: StageCache, options: ApkovlStageOptions): Promise<StageResult<string>> {
  const { overlay, siteUrl, ...settings } = options;
  const extraFiles = siteUrl ? [{ path: 'etc/psyopsOS/site.url', content: `${siteUrl}\n`, mode: 0o644 }] : [];
  const fingerprint = await overlayFingerprint(overlay);
  const hook = postbootHook(options.release);
  return runStage(cache, 'apkovl', { ...settings, overlay: fingerprint, extraFiles, hook }, async (dir) => {
    const out = join(dir, `${options.hostname}.apkovl.tar.gz`);
    await buildApkovl({ ...settings, overlayDir: fingerprint ? overlay : undefined, extraFiles, postbootHook: hook, out, signal: cache.signal });
    return out;
  });
}
