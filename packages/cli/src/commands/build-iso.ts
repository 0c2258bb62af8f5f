import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { readSecretKeyFile, type SecretKey } from '@psyops/signing';
import type { BuildIsoOptions, BuildProgress } from '@psyops/imagebuild';
import { currentWorkspace, sourceDateEpoch } from '../context.js';
import { obtainPassword, type PasswordSources } from '../password.js';
import { NoWorkspaceError, WORKSPACE_ENV } from '../workspace.js';
import { addPasswordOptions } from './options.js';
import { prepareDefaultImage } from '../default-image.js';

interface BuildIsoCommandOptions extends PasswordSources {
  release?: string;
  out?: string;
  offline?: boolean;
  rebuild?: boolean;
  cacheDir?: string;
}

const imagebuild = () => import('@psyops/imagebuild');

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
        'busybox and Node.js, wrapped into a local APK repository (built on first use under $PSYOPS_DEFAULT_HOME, ' +
        'default ~/.cache/psyops/default-image) and written to ./out. No network is needed.',
    )
    .option('--release <TAG>', 'release tag (default: image.release, else yymmdd of the build date)')
    .option('--out <DIR>', 'output directory (default: image.outDir; ./out for the embedded default)')
    .option('--offline', 'use only cached indexes and packages; fail if one is missing')
    .option('--rebuild', 'rebuild every stage instead of reusing cached ones')
    .option('--cache-dir <DIR>', 'package and stage cache (default: <workspace>/cache)');
  addPasswordOptions(command);
  return command.action(async (options: BuildIsoCommandOptions, cmd: Command) => {
    const epoch = sourceDateEpoch();
    const progress = progressPrinter();
    let build: Omit<BuildIsoOptions, 'secretKey' | 'onProgress'>;
    let secretKey: SecretKey;
    try {
      const workspace = await currentWorkspace(cmd);
      const image = workspace.config.image;
      const keyPath = workspace.path(workspace.config.signing.secretKey);
      secretKey = await readSecretKeyFile(keyPath, () => obtainPassword(options, `secret key ${keyPath}`));
      build = {
        flavor: image.flavor,
        world: image.world,
        kernel: image.kernel,
        initramfsPackages: image.initramfsPackages,
        overlayDir: workspace.path(image.overlay),
        kernelCmdline: image.kernelCmdline,
        hostname: image.hostname,
        siteUrl: workspace.config.site.url,
        repositories: workspace.config.repositories.map((repository) => ({ url: isUrl(repository.url) ? repository.url : workspace.path(repository.url), keysDir: workspace.path(repository.keys) })),
        outDir: resolve(options.out ?? workspace.path(image.outDir)),
        cacheDir: resolve(options.cacheDir ?? workspace.place('cache')),
        gitDir: workspace.dir,
        ...(image.release !== undefined ? { release: image.release } : {}),
      };
    } catch (error) {
      // Only when no workspace was named: --workspace or PSYOPS_WORKSPACE pointing nowhere is an error.
      const named = cmd.optsWithGlobals<{ workspace?: string }>().workspace ?? process.env[WORKSPACE_ENV];
      if (!(error instanceof NoWorkspaceError) || (named !== undefined && named !== '')) throw error;
      const home = defaultImageHome();
      process.stderr.write(`build-iso: no workspace here: building the embedded default image (this host's kernel, busybox and Node.js) from ${home}\n`);
      const prepared = await prepareDefaultImage(home, (line) => process.stderr.write(`build-iso: ${line}\n`), epoch);
      secretKey = prepared.secretKey;
      build = { ...prepared.build, outDir: resolve(options.out ?? 'out'), cacheDir: resolve(options.cacheDir ?? prepared.build.cacheDir) };
    }
    const { buildIso } = await imagebuild();
    const result = await buildIso({
      ...build,
      ...(options.release !== undefined ? { release: options.release } : {}),
      ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
      offline: options.offline ?? false,
      rebuild: options.rebuild ?? false,
      secretKey,
      onProgress: progress,
    });
    process.stdout.write(
      `${result.iso}\n` +
        `  ${(result.manifest.size / 2 ** 20).toFixed(1)} MiB, sha256 ${result.manifest.sha256}\n` +
        `  signature ${result.signature}\n  manifest  ${result.manifestPath}\n`,
    );
  });
}

const isUrl = (value: string) => /^https?:\/\//.test(value);
