import { resolve } from 'node:path';
import { Command } from 'commander';
import { formatKeyId } from '@psyops/signing';
import { sourceDateEpoch } from '../context.js';
import { UsageError } from '../errors.js';
import { liveStatus } from '../progress.js';
import { interruptible, progressPrinter, resolveImageBuild, shellPath, verifyCommand, withAlpineKeysHint } from './build-iso.js';
import { addPasswordOptions } from './options.js';
import type { PasswordSources } from '../password.js';

interface BuildDiskCommandOptions extends PasswordSources {
  release?: string;
  out?: string;
  offline?: boolean;
  rebuild?: boolean;
  cacheDir?: string;
  mirror?: string;
  json?: boolean;
  secretImage?: string;
  node?: string;
  slotSize?: string;
  kernelCmdlineAppend?: string;
}

export function buildDiskCommand(): Command {
  const command = new Command('build-disk')
    .summary('build the signed A/B disk image and the update artifact')
    .description(
      'Build psyopsOS as build-iso does (same workspace, stages and cache), then write <out>/psyopsOS-<release>-<arch>.img: ' +
        "a GPT disk booted by UEFI, with psyops-esp (GRUB and its environment block), psyops-secret (empty, or a node's with --secret-image), " +
        'psyops-state (empty) and two OS slots psyopsOS-A and psyopsOS-B holding the same release (kernel, initramfs, modloop, root image, ' +
        'apkovl and a signed psyopsOS-slot.json). GRUB boots the good slot (A at first); a node that updates writes the other slot and has GRUB ' +
        'try it once, and comes back on the good one by itself when the new one does not reach status=ok. Beside it, ' +
        "<out>/psyopsOS-<release>-<arch>.tar, the update artifact site build publishes, each with a .minisig, and the disk's .img.json " +
        'manifest with its partitions. No root, no loop devices; the same inputs and SOURCE_DATE_EPOCH give the same bytes.',
    )
    .option('--release <TAG>', 'release tag (default: image.release, else yymmdd of the build date)')
    .option('--out <DIR>', 'output directory (default: image.outDir; ./out for the embedded default)')
    .option('--secret-image <FILE>', 'put this node secret volume (psyops node create --out) on the disk: named …-<node>.img, mode 0600')
    .option('--node <NAME>', 'with --secret-image: the node it must belong to (checked against its nodename)')
    .option('--slot-size <MIB>', 'size of each OS slot in MiB (default: twice the slot content, at least 64)')
    .option('--kernel-cmdline-append <WORDS>', 'words added to the kernel command line of this release')
    .option('--offline', 'use only cached indexes and packages; fail if one is missing')
    .option('--rebuild', 'rebuild every stage instead of reusing cached ones')
    .option('--cache-dir <DIR>', 'package and stage cache (default: <workspace>/cache)')
    .option('--mirror <URL>', 'Alpine mirror for the alpine repositories of this build (default: alpine.mirror)')
    .option('--json', 'print one JSON object about the disk and the update artifact to stdout (the summary goes to stderr)');
  addPasswordOptions(command);
  return command.action(async (options: BuildDiskCommandOptions, cmd: Command) => {
    const epoch = sourceDateEpoch();
    if (options.mirror !== undefined && !/^https?:\/\/\S+$/.test(options.mirror))
      throw new UsageError(`--mirror must be an http(s) URL, got "${options.mirror}"`);
    if (options.node !== undefined && options.secretImage === undefined)
      throw new UsageError("--node NAME needs --secret-image FILE (the node's secret volume)");
    if (options.slotSize !== undefined && !/^\d{1,7}$/.test(options.slotSize))
      throw new UsageError(`--slot-size must be a whole number of MiB, got "${options.slotSize}"`);
    const append = options.kernelCmdlineAppend?.trim();
    if (append !== undefined && !/^[\x21-\x7e]+( [\x21-\x7e]+)*$/.test(append.replace(/\s+/g, ' ')))
      throw new UsageError('--kernel-cmdline-append must be printable words separated by spaces');
    const { buildDisk, secretVolumeNodeName } = await import('@psyops/imagebuild');
    if (options.secretImage !== undefined) {
      const owner = await secretVolumeNodeName(resolve(options.secretImage));
      if (options.node !== undefined && owner !== options.node)
        throw new UsageError(`--node ${options.node}: ${options.secretImage} is the secret volume of ${owner}`);
    }
    const status = liveStatus('build-disk');
    const { build, keyFiles, ownRepository } = await resolveImageBuild(options, cmd, status, 'build-disk');
    const secretKey = build.secretKey!;
    const kernelCmdline = append ? `${build.image.kernelCmdline} ${append.replace(/\s+/g, ' ')}`.trim() : build.image.kernelCmdline;
    const result = await interruptible(
      status,
      build.image.outDir,
      (signal) =>
        buildDisk({
          ...build,
          secretKey,
          image: { ...build.image, kernelCmdline, ...(options.release !== undefined ? { release: options.release } : {}) },
          ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
          ...(options.secretImage !== undefined ? { secretVolume: resolve(options.secretImage) } : {}),
          ...(options.slotSize !== undefined ? { slotSizeMiB: Number(options.slotSize) } : {}),
          offline: options.offline ?? false,
          rebuild: options.rebuild ?? false,
          onProgress: progressPrinter(status, 'build-disk'),
          signal,
        }),
      'build-disk',
    ).catch((error: unknown) => {
      throw withAlpineKeysHint(error, build.repositories, ownRepository);
    });
    status.stop();
    const { manifest } = result;
    const keyId = formatKeyId(secretKey.keyId);
    const slotMiB = manifest.partitions.at(-1)!.size / 2 ** 20;
    const summary =
      `${result.disk}\n` +
      `  ${(manifest.size / 2 ** 20).toFixed(1)} MiB, sha256 ${manifest.sha256}; slots of ${slotMiB} MiB${manifest.node ? `; secret volume of ${manifest.node} (mode 0600)` : ''}\n` +
      `  signature ${result.signature}\n  manifest  ${result.manifestPath}\n` +
      `${result.update}\n  the update artifact (${(manifest.update.size / 2 ** 20).toFixed(1)} MiB), signature ${result.updateSignature}\n` +
      `  signed with ${shellPath(keyFiles.secretKey, true)} (key id ${keyId}); verify with:\n` +
      `    ${verifyCommand(result.disk, keyFiles.publicKey, true)}\n`;
    if (!options.json) {
      process.stdout.write(summary);
      return;
    }
    process.stderr.write(summary);
    process.stdout.write(
      `${JSON.stringify({
        disk: result.disk,
        signature: result.signature,
        manifest: result.manifestPath,
        update: result.update,
        updateSignature: result.updateSignature,
        release: manifest.version,
        arch: manifest.arch,
        node: manifest.node,
        size: manifest.size,
        sha256: manifest.sha256,
        partitions: manifest.partitions,
        keyId,
        stages: result.stages,
      })}\n`,
    );
  });
}
