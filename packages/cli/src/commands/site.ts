import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { readSecretKeyFile } from '@psyops/signing';
import type { DeployEvent } from '@psyops/siteapi';
import { currentWorkspace, sourceDateEpoch } from '../context.js';
import { workspaceLighthouses } from '../lighthouses.js';
import { UsageError } from '../errors.js';
import { obtainPassword, type PasswordSources } from '../password.js';
import { WORKSPACE_LAYOUT } from '../workspace.js';
import { addPasswordOptions } from './options.js';

// The site's inputs inside a workspace (see the siteapi README).
const { nodes: NODES_DIR, out: IMAGES_DIR, apk: APK_DIR, apkKeys: APK_KEYS_DIR } = WORKSPACE_LAYOUT;
const SECRET_CACHE = 'site-secrets.json';

interface BuildOptions extends PasswordSources {
  out?: string;
}

interface DeployCommandOptions {
  bucket: string;
  endpoint?: string;
  prefix: string;
  region?: string;
  delete?: boolean;
  dryRun?: boolean;
  concurrency: string;
}

interface ServeOptions {
  port: string;
  host: string;
}

/** The site folder: DIR when given, else the workspace's site.outDir. */
async function siteDir(dir: string | undefined, cmd: Command): Promise<string> {
  if (dir !== undefined) return resolve(dir);
  const workspace = await currentWorkspace(cmd);
  return workspace.path(workspace.config.site.outDir);
}

function buildCommand(): Command {
  const command = new Command('build')
    .summary('build the signed static site from the workspace')
    .description(
      'Build the site nodes configure themselves from into --out (default: site.outDir of the workspace), from:\n' +
        [
          [`${NODES_DIR}/<name>.json`, 'node definitions: nodes/<name>.json, secrets age-encrypted'],
          [`${IMAGES_DIR}/psyopsOS-*.iso`, 'OS images and their .json manifests: os/, os/latest.json'],
          [`${APK_DIR}/<arch>/`, `APK repository (psyops apk index), trusted by ${APK_KEYS_DIR}`],
          ['psynet registry', 'lighthouses: psynet/lighthouses.json, at the underlay endpoints their node definitions'],
          ['', 'record (node create --lighthouse), then the psynet.lighthouses addresses of psyops.config.json'],
        ]
          .map(([input, output]) => `  ${input!.padEnd(20)}${output}\n`)
          .join('') +
        'plus index.json, manifest.json, schemas/, index.html and error.html. Every JSON document is signed with the workspace minisign key. ' +
        'Nothing is replaced unless the whole build succeeds, and the same inputs give the same bytes: signature timestamps come from SOURCE_DATE_EPOCH when set, never from the clock.',
    )
    .option('-o, --out <DIR>', 'output folder (default: the workspace site.outDir)');
  addPasswordOptions(command);
  return command.action(async (options: BuildOptions, cmd: Command) => {
    const workspace = await currentWorkspace(cmd);
    const outDir = options.out !== undefined ? resolve(options.out) : workspace.path(workspace.config.site.outDir);
    const { buildSite } = await import('@psyops/siteapi');
    const { lighthouses } = await workspaceLighthouses(workspace);
    const keyPath = workspace.path(workspace.config.signing.secretKey);
    const signingKey = await readSecretKeyFile(keyPath, () => obtainPassword(options, `secret key ${keyPath}`));
    const timestamp = sourceDateEpoch();
    const result = await buildSite({
      outDir,
      signingKey,
      ...(timestamp !== undefined ? { timestamp } : {}),
      nodesDir: workspace.place('nodes'),
      imagesDir: workspace.place('out'),
      apkRepositoryDir: workspace.place('apk'),
      apkTrustedKeysDir: workspace.place('apkKeys'),
      lighthouses,
      secretCacheFile: workspace.place('cache', SECRET_CACHE),
      ...(process.stderr.isTTY ? { onProgress: (line: string) => process.stderr.write(`${line}\n`) } : {}),
    });
    const latest = result.images.length > 0 ? `, ${result.images.length} OS image(s)` : ', no OS image';
    const apk = result.apkArchitectures.length > 0 ? `, APK repository for ${result.apkArchitectures.join(', ')}` : ', no APK repository';
    process.stdout.write(
      `site built: ${outDir} (${result.files.length + 2} files: ${result.nodes.length} node(s)${latest}${apk}, ${lighthouses.length} lighthouse(s))\n`,
    );
  });
}

function deployCommand(): Command {
  return new Command('deploy')
    .summary('sync the built site to an S3 bucket, sending only what changed')
    .description(
      'Make the objects under --prefix in --bucket match the site folder DIR (default: the workspace site.outDir). ' +
        'Files are compared by size and checksum with one listing of the bucket; only new and changed files are uploaded (multipart for big ones), ' +
        'with Content-Type by extension and Cache-Control short for index.*, latest.*, manifest.* and APKINDEX, a year and immutable for images and packages. ' +
        'Those pointer files go up last, so a client never sees a pointer to an object that is not there yet. An interrupted deploy is finished by running it again.\n' +
        'Credentials come from the standard AWS chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws.',
    )
    .argument('[DIR]', 'the built site (default: the workspace site.outDir)')
    .requiredOption('-b, --bucket <BUCKET>', 'S3 bucket name')
    .option('--endpoint <URL>', 'S3-compatible endpoint (MinIO, R2, a local test server); path-style addressing')
    .option('--prefix <PREFIX>', 'key prefix inside the bucket; nothing outside it is read, changed or deleted', '')
    .option('--region <REGION>', 'AWS region (default: $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1)')
    .option('--delete', 'after every upload succeeded, delete objects under the prefix that the site no longer has')
    .option('-n, --dry-run', 'print what would be uploaded and deleted; change nothing')
    .addOption(new Option('-j, --concurrency <N>', 'uploads in flight at once (1-256)').default('8'))
    .action(async (dir: string | undefined, options: DeployCommandOptions, cmd: Command) => {
      const concurrency = Number(options.concurrency);
      if (!/^\d+$/.test(options.concurrency)) throw new UsageError(`--concurrency must be a whole number, got "${options.concurrency}"`);
      const site = await siteDir(dir, cmd);
      // The SDK's notice about its future Node versions would break the one-line output contract.
      process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
      const region = options.region ?? (process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || 'us-east-1');
      const { deploySite, normalizePrefix } = await import('@psyops/siteapi');
      const target = `s3://${options.bucket}/${normalizePrefix(options.prefix)}`;
      const tty = process.stderr.isTTY;
      const onProgress = (event: DeployEvent) => {
        if (event.type === 'planned') {
          if (!options.dryRun) process.stderr.write(`${target}: ${event.uploads} to upload, ${event.unchanged} unchanged, ${event.deletions} to delete\n`);
        } else if (event.type === 'uploaded' && tty) {
          process.stderr.write(`\ruploaded ${event.done}/${event.total}${event.done === event.total ? '\r\x1b[K' : ''}`);
        }
      };
      const result = await deploySite({
        dir: site,
        bucket: options.bucket,
        prefix: options.prefix,
        ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
        region,
        delete: options.delete ?? false,
        dryRun: options.dryRun ?? false,
        concurrency,
        onProgress,
      });
      if (result.dryRun) {
        for (const upload of result.uploads) process.stdout.write(`upload ${upload.key} (${upload.reason}, ${upload.size} bytes)\n`);
        for (const key of result.deletions) process.stdout.write(`delete ${key}\n`);
        process.stdout.write(
          `dry run, nothing changed: ${result.uploads.length} to upload, ${result.unchanged} unchanged, ${result.deletions.length} to delete (${target})\n`,
        );
        return;
      }
      process.stdout.write(
        `deployed ${site} to ${target}: ${result.uploads.length} uploaded, ${result.unchanged} unchanged, ${result.deletions.length} deleted\n`,
      );
    });
}

function serveCommand(): Command {
  return new Command('serve')
    .summary('serve the built site over HTTP, for development and QEMU tests')
    .description(
      'Serve DIR (default: the workspace site.outDir) as static files: Content-Type by extension, HEAD and Range requests, ' +
        'error.html with status 404, and nothing outside DIR. Prints the URL, then runs until interrupted.',
    )
    .argument('[DIR]', 'the built site (default: the workspace site.outDir)')
    .option('-p, --port <PORT>', 'TCP port; 0 picks a free one', '8080')
    .option('--host <HOST>', 'address to listen on', '127.0.0.1')
    .action(async (dir: string | undefined, options: ServeOptions, cmd: Command) => {
      if (!/^\d+$/.test(options.port) || Number(options.port) > 65535) throw new UsageError(`--port must be a number from 0 to 65535, got "${options.port}"`);
      const root = await siteDir(dir, cmd);
      const { serveSite } = await import('@psyops/siteapi');
      const server = await serveSite({ root, host: options.host, port: Number(options.port) });
      process.stdout.write(`serving ${root} at ${server.url}\n`);
      await new Promise<void>((done) => {
        const stop = () => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          void server.close().then(done);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    });
}

export function siteCommand(): Command {
  return (
    new Command('site')
      .summary('build, deploy and serve the signed static site')
      .description('The signed static site nodes configure themselves from: build it from the workspace, sync it to S3, serve it locally.')
      .addCommand(buildCommand())
      .addCommand(deployCommand())
      .addCommand(serveCommand())
      // createProgram gives `site` the CLI's exit and error-output settings; its subcommands need them too.
      .hook('preSubcommand', (site, subcommand) => {
        subcommand.exitOverride().configureOutput(site.configureOutput());
      })
  );
}
