/**
 * `psyops-node upgrade`: installed packages upgraded from the site's signed APK repository (the
 * repositories and keys of /etc/apk). With apk-tools in the image (/sbin/apk): `apk upgrade`.
 * Without it (the embedded default image): apkpkg's client, one package at a time: the index's
 * signature checked against /etc/apk/keys, each newer package checked against the signed index
 * (identity, size, signature, datahash, file checksums) before anything of it is written, its
 * pre-upgrade script, its files over the root (the old version's files it no longer has removed),
 * its post-upgrade script, and lib/apk/db/installed and scripts.tar rewritten (temp + rename) after each package.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import {
  compareVersions,
  extractPackage,
  loadKeysDir,
  readIndex,
  readPackage,
  type ApkKeyRing,
  type ApkPackage,
  type ExtractOptions,
  type IndexEntry,
} from '@psyops/apkpkg';
import { formatInstalledDb, formatScriptsTar, installedPackageOf, parseIdFile, parseInstalledDb } from '@psyops/apkpkg/format';
import { oneLine } from '../postboot/context.js';
import type { NodeSystem } from '../system.js';
import { UpgradeError } from './errors.js';
import { replaceInstalledBlock, replaceScriptsEntries } from './installed-db.js';
import { mountedSecretVolume, siteUrlOf } from './node-identity.js';

export const INSTALLED_DB = '/lib/apk/db/installed';
const SCRIPTS_TAR = '/lib/apk/db/scripts.tar';
const REPOSITORIES = '/etc/apk/repositories';
const KEYS_DIR = '/etc/apk/keys';
const INDEX_MAX_BYTES = 64 * 1024 * 1024;

export interface UpgradeOptions {
  /** Deadline of each download (default 300 000 ms). */
  fetchTimeoutMs?: number;
  /** Force the built-in client even when /sbin/apk exists (tests, or a broken apk). */
  builtin?: boolean;
}

export interface UpgradeReport {
  upgraded: { name: string; from: string; to: string }[];
  /** Installed packages left as they are (no newer version in the repositories, or not in them). */
  unchanged: number;
  /** `apk` (apk-tools) or `builtin` (apkpkg). */
  client: 'apk' | 'builtin';
  /** Scripts that failed (the package is installed nonetheless, as apk does for post-upgrade). */
  problems: string[];
}

/** The repository URLs of /etc/apk/repositories (comments, blank lines and local directories left out; `@tag url` taken as url). */
export function repositoryUrls(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => (line.startsWith('@') ? (line.split(/\s+/)[1] ?? '') : line))
    .filter((url) => /^https?:\/\//.test(url))
    .map((url) => url.replace(/\/+$/, ''));
}

const ARCHES: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64', arm: 'armv7', ia32: 'x86', riscv64: 'riscv64', ppc64: 'ppc64le', s390x: 's390x' };

async function machineArch(system: NodeSystem): Promise<string> {
  const file = (await system.readFile('/etc/apk/arch'))?.toString('utf8').trim();
  return file || ARCHES[process.arch] || process.arch;
}

interface Candidate {
  entry: IndexEntry;
  repository: string;
}

/** The newest version of each name across the repositories (the earlier repository wins a tie, as apk's order does). */
async function newestInRepositories(
  system: NodeSystem,
  repositories: string[],
  arch: string,
  keys: ApkKeyRing,
  deadlineMs: number,
): Promise<Map<string, Candidate>> {
  const newest = new Map<string, Candidate>();
  for (const repository of repositories) {
    const url = `${repository}/${arch}/APKINDEX.tar.gz`;
    const response = await system.fetch(url, { deadlineMs, maxBytes: INDEX_MAX_BYTES }).catch((error: unknown) => {
      throw new UpgradeError(`cannot fetch ${url}: ${oneLine(error)}`);
    });
    if (response.status !== 200) throw new UpgradeError(`cannot fetch ${url}: HTTP ${response.status}`);
    let entries: IndexEntry[];
    try {
      entries = readIndex(response.body, { keys, name: url }).entries;
    } catch (error) {
      throw new UpgradeError(`${oneLine(error)} (keys in ${KEYS_DIR}): nothing upgraded`);
    }
    for (const entry of entries) {
      const known = newest.get(entry.name);
      if (!known || compareVersions(entry.version, known.entry.version) > 0) newest.set(entry.name, { entry, repository });
    }
  }
  return newest;
}

type InstalledDbEntry = ReturnType<typeof parseInstalledDb>[number];
type FileOwner = NonNullable<ExtractOptions['owners']> extends Map<string, infer O> ? O : never;

/** The paths each installed package owns (`F:` + `R:`), and the owners map extractPackage applies apk's overwrite rules with. */
function ownedFiles(db: InstalledDbEntry[]): { byPackage: Map<string, string[]>; owners: Map<string, FileOwner> } {
  const byPackage = new Map<string, string[]>();
  const owners = new Map<string, FileOwner>();
  for (const entry of db) {
    const name = entry.fields.get('P')!;
    const owner: FileOwner = {
      name,
      version: entry.fields.get('V') ?? '',
      identity: entry.fields.get('C') ?? '',
      replaces: entry.replaces,
      replacesPriority: entry.replacesPriority ?? 0,
      ...(entry.fields.has('o') ? { origin: entry.fields.get('o')! } : {}),
    };
    const paths = entry.dirs.flatMap((dir) => dir.files.map((file) => (dir.name === '' ? file.name : `${dir.name}/${file.name}`)));
    byPackage.set(name, paths);
    for (const path of paths) owners.set(path, owner);
  }
  return { byPackage, owners };
}

/** Runs one of the package's install scripts as apk does (`<script> <new version> <old version>`), with ROOT set for a root other than /. */
function runScript(root: string, pkg: ApkPackage, script: 'pre-upgrade' | 'post-upgrade', from: string): Promise<string | undefined> {
  const body = pkg.scripts[`.${script}`];
  if (!body) return Promise.resolve(undefined);
  const dir = mkdtempSync(join(tmpdir(), 'psyops-script-'));
  const file = join(dir, `${pkg.info.pkgname}.${script}`);
  writeFileSync(file, body, { mode: 0o700 });
  const env = { ...process.env, ...(root === '/' ? {} : { ROOT: root }) };
  return new Promise((resolve) => {
    execFile('/bin/sh', [file, pkg.info.pkgver, from], { cwd: root, env, timeout: 300_000 }, (error, _stdout, stderr) => {
      rmSync(dir, { recursive: true, force: true });
      resolve(
        error
          ? `${pkg.info.pkgname} ${script} failed (${error.code ?? error.signal ?? 'error'}): ${String(stderr).trim().split('\n').at(-1) ?? ''}`
          : undefined,
      );
    });
  });
}

/** `apk upgrade` and what it says it upgraded: `(1/2) Upgrading psyopsOS-base (1.0-r0 -> 1.1-r0)`. */
async function upgradeWithApk(system: NodeSystem): Promise<UpgradeReport> {
  const result = await system.run('apk', ['upgrade', '--no-progress'], 900_000);
  if (result.exitCode !== 0) throw new UpgradeError(`apk upgrade failed (exit ${result.exitCode}): ${result.stderr.trim().split('\n').at(-1) ?? ''}`);
  const upgraded = [...result.stdout.matchAll(/^\(\d+\/\d+\) Upgrading (\S+) \((\S+) -> (\S+)\)/gm)].map(([, name, from, to]) => ({
    name: name!,
    from: from!,
    to: to!,
  }));
  const installed = parseInstalledDb((await system.readFile(INSTALLED_DB))?.toString('utf8') ?? '').length;
  return { upgraded, unchanged: Math.max(0, installed - upgraded.length), client: 'apk', problems: [] };
}

/** `<site>/apk/psyopsOS`, where siteapi publishes the site's repository; undefined without a secret volume or site URL. */
async function siteRepository(system: NodeSystem): Promise<string | undefined> {
  try {
    const volume = await mountedSecretVolume(system);
    return `${(await siteUrlOf(system, volume)).replace(/\/+$/, '')}/apk/psyopsOS`;
  } catch {
    return undefined;
  }
}

/** Upgrades the installed packages that the site's repositories have in a newer version. */
export async function runUpgrade(system: NodeSystem, options: UpgradeOptions = {}): Promise<UpgradeReport> {
  if (!options.builtin && (await system.exists('/sbin/apk'))) return upgradeWithApk(system);
  const deadlineMs = options.fetchTimeoutMs ?? 300_000;
  const dbBytes = await system.readFile(INSTALLED_DB);
  if (!dbBytes) throw new UpgradeError(`no ${INSTALLED_DB}: this root has no installed packages to upgrade`);
  let dbText = dbBytes.toString('utf8');
  const db = parseInstalledDb(dbText);
  const repositories = repositoryUrls((await system.readFile(REPOSITORIES))?.toString('utf8') ?? '');
  // The site's own repository always counts, also for an image built without a site URL (its
  // repositories file then names none): the node knows its site from the secret volume.
  const site = await siteRepository(system);
  if (site !== undefined && !repositories.includes(site)) repositories.push(site);
  if (repositories.length === 0) throw new UpgradeError(`no http(s) repository in ${REPOSITORIES} and no site URL`);
  const keys = await loadKeysDir(system.pathOnHost(KEYS_DIR));
  if (keys.size === 0) throw new UpgradeError(`no RSA public key in ${KEYS_DIR}: no repository can be trusted`);
  const arch = await machineArch(system);
  const newest = await newestInRepositories(system, repositories, arch, keys, deadlineMs);

  const root = system.pathOnHost('/');
  const text = async (path: string) => (await system.readFile(path))?.toString('utf8') ?? '';
  const ids = { users: parseIdFile(await text('/etc/passwd')), groups: parseIdFile(await text('/etc/group')) };
  const { byPackage, owners } = ownedFiles(db);
  const report: UpgradeReport = { upgraded: [], unchanged: 0, client: 'builtin', problems: [] };
  for (const installed of db) {
    const name = installed.fields.get('P')!;
    const from = installed.fields.get('V') ?? '';
    const candidate = newest.get(name);
    if (!candidate || compareVersions(candidate.entry.version, from) <= 0) {
      report.unchanged++;
      continue;
    }
    const { entry, repository } = candidate;
    const url = `${repository}/${arch}/${name}-${entry.version}.apk`;
    const response = await system.fetch(url, { deadlineMs, maxBytes: entry.size || INDEX_MAX_BYTES }).catch((error: unknown) => {
      throw new UpgradeError(`cannot fetch ${url}: ${oneLine(error)}`);
    });
    if (response.status !== 200) throw new UpgradeError(`cannot fetch ${url}: HTTP ${response.status}`);
    let pkg: ApkPackage;
    try {
      // The signed index's C: and S: vouch for the file; its own signature is checked too when it carries a known key's.
      pkg = readPackage(response.body, { keys, allowUntrusted: true, indexEntry: entry, name: url });
    } catch (error) {
      throw new UpgradeError(`${oneLine(error)}: ${name} not upgraded`);
    }
    const refused = await runScript(root, pkg, 'pre-upgrade', from);
    if (refused) throw new UpgradeError(`${refused}: ${name} not upgraded`);
    await extractPackage(pkg, root, { owners });
    // What the old version had and the new one does not, unless another package owns it now.
    const now = new Set(pkg.files.filter((file) => file.type !== 'dir').map((file) => file.path));
    for (const path of byPackage.get(name) ?? []) {
      if (now.has(path) || (owners.get(path) !== undefined && owners.get(path)!.name !== name)) continue;
      owners.delete(path);
      await rm(posix.join(root, path), { force: true });
    }
    const record = installedPackageOf(pkg, installed.fields.get('A') ?? entry.arch);
    dbText = replaceInstalledBlock(dbText, name, formatInstalledDb([record], ids));
    // apk keeps every installed package's scripts in scripts.tar: the new version's replace the old's.
    const scripts = await system.readFile(SCRIPTS_TAR);
    if (scripts) {
      const added = formatScriptsTar([record], pkg.info.builddate ?? 0);
      await system.writeFile(SCRIPTS_TAR, replaceScriptsEntries(scripts, `${name}-${from}.${installed.fields.get('C') ?? ''}.`, added), 0o644);
    }
    // After every package: a power cut between two leaves a database that matches the files.
    await system.writeFile(INSTALLED_DB, dbText, 0o644);
    const failed = await runScript(root, pkg, 'post-upgrade', from);
    if (failed) report.problems.push(failed);
    report.upgraded.push({ name, from, to: entry.version });
  }
  return report;
}
