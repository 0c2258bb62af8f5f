/**
 * The apkovl: a gzip'ed tar that /init extracts over the fresh root, the equivalent of the
 * original genapkovl-psyopsOS.sh (hostname, world, sshd config, issue, motd, the postboot hook,
 * build info, runlevels, the secret mount point) plus the workspace overlay.
 */
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { tarHeader, tarPadding } from '@psyops/apkpkg';
import { writeFilesAtomically } from '@psyops/core';
import { gzipDeterministic } from './cpio.js';
import { ImageConfigError } from './errors.js';

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
}

type OverlayEntry =
  | { type: 'dir'; mode: number }
  | { type: 'file'; mode: number; data: Uint8Array }
  | { type: 'symlink'; target: string };

/** OpenRC runlevels of the original apkovl (links to /etc/init.d/<service>). */
export const RUNLEVELS: Readonly<Record<string, readonly string[]>> = {
  sysinit: ['devfs', 'dmesg', 'mdev', 'hwdrivers', 'modloop'],
  boot: ['hwclock', 'modules', 'sysctl', 'hostname', 'bootmisc', 'syslog'],
  default: ['local', 'sshd'],
  shutdown: ['mount-ro', 'killprocs', 'savecache'],
};

export const POSTBOOT_HOOK_PATH = 'etc/local.d/000-psyopsOS-postboot.start';

const SSHD_CONFIG = `# psyopsOS default: key-only logins; root may log in with a key.
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
  await writeFilesAtomically([{ path: options.out, data: gzipDeterministic(ustarArchive(tree.entries, options.mtime)) }]);
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
