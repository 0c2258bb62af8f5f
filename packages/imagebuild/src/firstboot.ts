/**
 * Package install scripts and triggers, in the order apk 2.14 runs them, as scripts the image's
 * /init runs chrooted at first boot (the root is assembled on the build host, where nothing of the
 * target may run).
 *
 * apk (database.c apk_db_install_pkg, commit.c run_triggers, package.c apk_ipkg_run_script): for
 * each package in install order, pre-install, its files, post-install; each script executed
 * directly (its `#!` line picks the interpreter) with the package version as `$1`. Once every
 * package is in, each package whose `triggers` match directories of the database runs its trigger
 * script, in install order, with those directories as arguments.
 */
import { posix } from 'node:path';
import type { InstalledPackage } from '@psyops/apkpkg/format';

/** Where the scripts go in the root (/init runs and then removes them). */
export const FIRSTBOOT_DIR = 'lib/psyops/firstboot';

/** The package scripts themselves, run by the numbered wrappers (a directory /init's loop passes over). */
const EXEC_DIR = 'exec';
const INSTALL_SCRIPTS = ['pre-install', 'post-install'] as const;

export interface FirstBootFile {
  /** Relative to FIRSTBOOT_DIR. */
  name: string;
  data: Buffer;
}

export interface FirstBootPlan {
  files: FirstBootFile[];
  /** The scripts /init runs (the wrappers), in their order. */
  runs: string[];
}

/**
 * fnmatch(pattern, name, FNM_PATHNAME): `*`, `?` and `[…]` never match a `/`. apk matches each
 * trigger against a directory's rooted name (`/usr/share/fonts`); patterns without a leading `/`
 * never fire.
 */
export function matchesTrigger(pattern: string, rootedDir: string): boolean {
  if (!pattern.startsWith('/')) return false;
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end === -1) source += '\\[';
      else {
        let set = pattern.slice(i + 1, end);
        const negate = set.startsWith('!') || set.startsWith('^');
        if (negate) set = set.slice(1);
        source += `(?!/)[${negate ? '^' : ''}${set.replace(/[\\\]]/g, '\\$&')}]`;
        i = end;
      }
    } else if (c === '\\' && i + 1 < pattern.length) source += escapeRegex(pattern[++i]!);
    else source += escapeRegex(c);
  }
  return new RegExp(`^${source}$`).test(rootedDir);
}

function escapeRegex(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/**
 * Every directory apk's database knows after the install, rooted (`/`, `/etc`, …): each package's
 * directory entries, the root when it has top-level files, and all their parents (apk_db_dir_get
 * creates the parents too). As in the installed database, names starting with `.` do not count.
 */
export function databaseDirectories(installed: readonly InstalledPackage[]): string[] {
  const dirs = new Set<string>(['/']);
  const add = (dir: string): void => {
    for (let d = dir; d !== '' && d !== '.'; d = posix.dirname(d)) dirs.add(`/${d}`);
  };
  for (const { pkg } of installed) {
    for (const file of pkg.files) {
      if (file.path.startsWith('.')) continue;
      add(file.type === 'dir' ? file.path : posix.dirname(file.path));
    }
  }
  return [...dirs].sort();
}

export interface FiredTrigger {
  installed: InstalledPackage;
  /** The matching directories, each once (apk stops at the first pattern that matches one), sorted. */
  directories: string[];
}

/**
 * The triggers a fresh install runs, in install order. Every directory counts: each newly
 * installed package has run_all_triggers set, so apk does not limit itself to modified ones. A
 * package whose patterns match nothing, or that has no trigger script, runs nothing.
 */
export function firedTriggers(installed: readonly InstalledPackage[]): FiredTrigger[] {
  const dirs = databaseDirectories(installed);
  const fired: FiredTrigger[] = [];
  for (const item of installed) {
    const patterns = item.pkg.info.triggers;
    if (patterns.length === 0 || !item.pkg.scripts['.trigger']) continue;
    const directories = dirs.filter((dir) => patterns.some((pattern) => matchesTrigger(pattern, dir)));
    if (directories.length > 0) fired.push({ installed: item, directories });
  }
  return fired;
}

const quote = (arg: string): string => `'${arg.replaceAll("'", `'\\''`)}'`;

/** A /bin/sh wrapper (what /init runs) that executes the package's own script as apk would. */
function wrapper(what: string, script: string, args: readonly string[]): Buffer {
  return Buffer.from(`#!/bin/sh\n# ${what}\nexec /${FIRSTBOOT_DIR}/${EXEC_DIR}/${script} ${args.map(quote).join(' ')}\n`);
}

/**
 * The first-boot scripts for packages in install order. /init runs `<key>.pre-install` then
 * `<key>.post-install` for each key in `ls` order, so: `NNNN-<name>.pre-install` and
 * `.post-install` with NNNN the package's 1-based install position, then each fired trigger as
 * the post-install step of its own key `NNNN-<name>.trigger`, numbered after every package. Each
 * wrapper executes the package's script (kept under `exec/` as `<name>-<version>.<script>`, apk's
 * own naming) with apk's arguments. `busyboxInstall` first adds `0000-busybox.post-install`
 * (busybox --install -s) for a busybox that ships no applet list, so later scripts have the applets.
 */
export function firstBootPlan(installed: readonly InstalledPackage[], options: { busyboxInstall: boolean }): FirstBootPlan {
  const plan: FirstBootPlan = { files: [], runs: [] };
  const run = (name: string, data: Buffer): void => {
    plan.files.push({ name, data });
    plan.runs.push(name);
  };
  const position = (i: number): string => String(i + 1).padStart(4, '0');
  if (options.busyboxInstall) run('0000-busybox.post-install', Buffer.from('#!/bin/sh\nexec /bin/busybox --install -s\n'));
  installed.forEach(({ entry, pkg }, i) => {
    for (const kind of INSTALL_SCRIPTS) {
      const data = pkg.scripts[`.${kind}`];
      if (!data) continue;
      const script = `${entry.name}-${entry.version}.${kind}`;
      plan.files.push({ name: `${EXEC_DIR}/${script}`, data });
      run(
        `${position(i)}-${entry.name}.${kind}`,
        wrapper(`${entry.name}-${entry.version} ${kind}, as apk runs it: with the version as $1`, script, [entry.version]),
      );
    }
  });
  firedTriggers(installed).forEach(({ installed: { entry, pkg }, directories }, k) => {
    const script = `${entry.name}-${entry.version}.trigger`;
    plan.files.push({ name: `${EXEC_DIR}/${script}`, data: pkg.scripts['.trigger']! });
    run(
      `${position(installed.length + k)}-${entry.name}.trigger.post-install`,
      wrapper(`${entry.name}-${entry.version} trigger, after every package, with the directories it watches`, script, directories),
    );
  });
  return plan;
}
