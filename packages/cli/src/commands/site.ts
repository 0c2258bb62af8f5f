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
import { formatBytes, liveStatus } from '../progress.js';

// The site's inputs inside a workspace (see the siteapi README).
const { nodes: NODES_DIR, out: IMAGES_DIR, apk: APK_DIR, apkKeys: APK_KEYS_DIR } = WORKSPACE_LAYOUT;
const SECRET_CACHE = 'site-secrets.json';

interface BuildOptions extends PasswordSources {
  out?: string;
  images?: string;
  validFor?: string;
  bumpVersions?: boolean;
  json?: boolean;
}

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

/** `30d`, `12h`, `90m`, `3600s` or `2w`, in seconds. */
function parseDuration(text: string, option: string): number {
  const match = /^(\d{1,9})([smhdw])$/.exec(text);
  if (!match || Number(match[1]) === 0) throw new UsageError(`${option} must be a positive duration such as 30d, 12h, 90m or 3600s, got "${text}"`);
  return Number(match[1]) * DURATION_UNITS[match[2]!]!;
}

interface DeployCommandOptions {
  bucket: string;
  endpoint?: string;
  prefix: string;
  region?: string;
  delete?: boolean;
  dryRun?: boolean;
  concurrency: string;
  json?: boolean;
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
          [`${IMAGES_DIR}/psyopsOS-*.tar`, 'update artifacts (build-disk): os/, signed here,'],
          ['', 'and os/update-<arch>.json naming the newest'],
          [`${APK_DIR}/<arch>/`, `APK repository (psyops apk index), trusted by ${APK_KEYS_DIR}`],
          // Rows short enough for an 80-column help: commander would wrap them flush left.
          ['psynet registry', 'lighthouses: psynet/lighthouses.json, at the underlay'],
          ['', 'endpoints their node definitions record (node create'],
          ['', '--lighthouse), then the psynet.lighthouses addresses'],
          ['', 'of psyops.config.json'],
        ]
          .map(([input, output]) => `  ${input!.padEnd(20)}${output}\n`)
          .join('') +
        'plus index.json, manifest.json, schemas/, index.html and error.html. Every JSON document is signed with the workspace minisign key. ' +
        'Nothing is replaced unless the whole build succeeds, and the same inputs give the same bytes: signature timestamps come from SOURCE_DATE_EPOCH when set, never from the clock.\n' +
        'Versions: a node takes each config version once. A node config that changed since the last build in the output folder while its version did not is refused ' +
        '(raise config.version, or pass --bump-versions); psynet/lighthouses.json gets the next version by itself when the list changes.',
    )
    .option('-o, --out <DIR>', 'output folder (default: the workspace site.outDir)')
    .option('--images <DIR>', `folder of OS images and update artifacts (default: the workspace ${IMAGES_DIR}/)`)
    .option(
      '--valid-for <DURATION>',
      'signatures of the JSON documents expire this long after SOURCE_DATE_EPOCH (else now): 30d, 12h, 90m, 3600s; nodes refuse an expired config and keep their last good one (default: no expiry)',
    )
    .option('--bump-versions', 'publish a node config that changed at an unchanged version with the next version, saying so, instead of refusing it')
    .option('--json', 'print one JSON object about the site to stdout (the summary goes to stderr)');
  addPasswordOptions(command);
  return command.action(async (options: BuildOptions, cmd: Command) => {
    const validFor = options.validFor === undefined ? undefined : parseDuration(options.validFor, '--valid-for');
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
      ...(validFor !== undefined ? { expiresAt: (timestamp ?? Math.floor(Date.now() / 1000)) + validFor } : {}),
      bumpVersions: options.bumpVersions ?? false,
      nodesDir: workspace.place('nodes'),
      imagesDir: options.images !== undefined ? resolve(options.images) : workspace.place('out'),
      apkRepositoryDir: workspace.place('apk'),
      apkTrustedKeysDir: workspace.place('apkKeys'),
      lighthouses,
      secretCacheFile: workspace.place('cache', SECRET_CACHE),
      ...(process.stderr.isTTY ? { onProgress: (line: string) => process.stderr.write(`${line}\n`) } : {}),
    });
    for (const bump of result.bumped)
      process.stderr.write(`note: node ${bump.name} published as version ${bump.version} (${NODES_DIR}/${bump.name}.json says ${bump.definitionVersion})\n`);
    const latest = result.images.length > 0 ? `, ${result.images.length} OS image(s)` : ', no OS image';
    const updates =
      result.updates.length > 0
        ? `, ${result.updates.length} update artifact(s) (newest: ${result.updatePointers.map((p) => `${p.version} ${p.arch}`).join(', ')})`
        : '';
    const apk = result.apkArchitectures.length > 0 ? `, APK repository for ${result.apkArchitectures.join(', ')}` : ', no APK repository';
    const summary = `site built: ${outDir} (${result.files.length + 2} files: ${result.nodes.length} node(s)${latest}${updates}${apk}, ${lighthouses.length} lighthouse(s))\n`;
    if (!options.json) {
      process.stdout.write(summary);
      return;
    }
    process.stderr.write(summary);
    const json = {
      outDir,
      // The site's files and manifest.json with its signature, as in the summary.
      files: result.files.length + 2,
      nodes: result.nodes,
      images: result.images.map((image) => image.filename),
      // Every update tar published (signed here), and the pointer per architecture to the newest one.
      updates: result.updates.map(({ filename, path, version, arch, kernel, alpine, size, sha256, trustedComment }) => ({
        filename,
        path,
        version,
        arch,
        kernel,
        alpine,
        size,
        sha256,
        trustedComment,
      })),
      updatePointers: result.updatePointers.map((pointer) => ({
        path: `os/update-${pointer.arch}.json`,
        arch: pointer.arch,
        version: pointer.version,
        filename: pointer.filename,
      })),
      apkArchitectures: result.apkArchitectures,
      lighthouses: lighthouses.length,
      lighthousesVersion: result.lighthousesVersion,
      bumped: result.bumped,
    };
    process.stdout.write(`${JSON.stringify(json)}\n`);
  });
}

function deployCommand(): Command {
  return new Command('deploy')
    .summary('sync the built site to an S3 bucket, sending only what changed')
    .description(
      'Make the objects under --prefix in --bucket match the site folder DIR (default: the workspace site.outDir). ' +
        'Files are compared by size and checksum with one listing of the bucket; only new and changed files are uploaded (multipart for big ones), ' +
        'with Content-Type by extension and Cache-Control short for index.*, latest.*, manifest.*, os/update-*.json and APKINDEX, a year and immutable for images, update tars and packages. ' +
        'Each document goes up before its signature (right after it), never a signature without its document; those pointer files go up last, so a client never sees a pointer to an object that is not there yet; with --delete, stale signatures go before their documents. An interrupted deploy is finished by running it again.\n' +
        'Credentials come from the standard AWS chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws.',
    )
    .argument('[DIR]', 'the built site (default: the workspace site.outDir)')
    .requiredOption('-b, --bucket <BUCKET>', 'S3 bucket name (required)')
    .option('--endpoint <URL>', 'S3-compatible endpoint (MinIO, R2, a local test server); path-style addressing')
    .option('--prefix <PREFIX>', 'key prefix inside the bucket; nothing outside it is read, changed or deleted', '')
    .option('--region <REGION>', 'AWS region (default: $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1)')
    .option('--delete', 'after every upload succeeded, delete objects under the prefix that the site no longer has')
    .option('-n, --dry-run', 'print what would be uploaded and deleted; change nothing')
    .addOption(new Option('-j, --concurrency <N>', 'uploads in flight at once (1-256)').default('8'))
    .option('--json', 'print one JSON object about the deploy (or the dry run) to stdout; the summary and progress go to stderr')
    .action(async (dir: string | undefined, options: DeployCommandOptions, cmd: Command) => {
      const concurrency = Number(options.concurrency);
      if (!/^\d+$/.test(options.concurrency)) throw new UsageError(`--concurrency must be a whole number, got "${options.concurrency}"`);
      const site = await siteDir(dir, cmd);
      // The SDK's notice about its future Node versions would break the one-line output contract.
      process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
      const region = options.region ?? (process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || 'us-east-1');
      const { deploySite, normalizePrefix } = await import('@psyops/siteapi');
      const target = `s3://${options.bucket}/${normalizePrefix(options.prefix)}`;
      // Like `aws s3 sync`: a line per uploaded file, and on a terminal a live line of files and bytes.
      const status = liveStatus('site deploy');
      let totalBytes = 0;
      let doneBytes = 0;
      const inFlight = new Map<string, number>();
      const showTotals = (done: number, total: number) => {
        const sending = [...inFlight.values()].reduce((sum, bytes) => sum + bytes, 0);
        status.update('uploading', `${done}/${total} files, ${formatBytes(doneBytes + sending)} of ${formatBytes(totalBytes)}`);
      };
      let filesDone = 0;
      let filesTotal = 0;
      const onProgress = (event: DeployEvent) => {
        if (event.type === 'planned') {
          totalBytes = event.bytes;
          filesTotal = event.uploads;
          if (!options.dryRun) {
            status.line(`${target}: ${event.uploads} to upload (${formatBytes(event.bytes)}), ${event.unchanged} unchanged, ${event.deletions} to delete`);
            if (event.uploads > 0) {
              status.start('uploading', 'uploading');
              showTotals(0, filesTotal);
            }
          }
        } else if (event.type === 'sending') {
          inFlight.set(event.key, event.sent);
          showTotals(filesDone, filesTotal);
        } else if (event.type === 'uploaded') {
          inFlight.delete(event.key);
          doneBytes += event.size;
          filesDone = event.done;
          status.line(`upload: ${event.key} (${formatBytes(event.size)})`);
          if (event.done === event.total) status.end('uploading');
          else showTotals(filesDone, filesTotal);
        } else if (event.type === 'deleted') {
          for (const key of event.keys) status.line(`delete: ${key}`);
        }
      };
      let result: Awaited<ReturnType<typeof deploySite>>;
      try {
        result = await deploySite({
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
      } finally {
        status.stop();
      }
      const human = options.json ? process.stderr : process.stdout;
      const bytes = result.uploads.reduce((sum, upload) => sum + upload.size, 0);
      if (result.dryRun) {
        for (const upload of result.uploads) human.write(`upload ${upload.key} (${upload.reason}, ${upload.size} bytes)\n`);
        for (const key of result.deletions) human.write(`delete ${key}\n`);
        human.write(
          `dry run, nothing changed: ${result.uploads.length} to upload, ${result.unchanged} unchanged, ${result.deletions.length} to delete (${target})\n`,
        );
      } else {
        human.write(
          `deployed ${site} to ${target}: ${result.uploads.length} uploaded, ${result.unchanged} unchanged, ${result.deletions.length} deleted (${formatBytes(bytes)} sent)\n`,
        );
      }
      if (options.json) {
        // What was uploaded and deleted, or with --dry-run what would be.
        const json = {
          dir: site,
          target,
          dryRun: result.dryRun,
          uploads: result.uploads.map(({ key, reason, size }) => ({ key, reason, size })),
          bytes,
          unchanged: result.unchanged,
          deletions: result.deletions,
        };
        process.stdout.write(`${JSON.stringify(json)}\n`);
      }
    });
}

function serveCommand(): Command {
  return new Command('serve')
    .summary('serve the built site over HTTP, for development and QEMU tests')
    .description(
      'Serve DIR (default: the workspace site.outDir) as static files: Content-Type by extension, HEAD and Range requests, ' +
        'error.html with status 404, and nothing outside DIR. Prints the URL, then runs until interrupted, logging each request to stderr: ' +
        '`<time> <client> <METHOD> <path> <status> <bytes>`, so you see a node fetch its config.',
    )
    .argument('[DIR]', 'the built site (default: the workspace site.outDir)')
    .option('-p, --port <PORT>', 'TCP port; 0 picks a free one', '8080')
    .option('--host <HOST>', 'address to listen on', '127.0.0.1')
    .action(async (dir: string | undefined, options: ServeOptions, cmd: Command) => {
      if (!/^\d+$/.test(options.port) || Number(options.port) > 65535) throw new UsageError(`--port must be a number from 0 to 65535, got "${options.port}"`);
      const root = await siteDir(dir, cmd);
      const { serveSite } = await import('@psyops/siteapi');
      const server = await serveSite({
        root,
        host: options.host,
        port: Number(options.port),
        onRequest: ({ method, path, status, bytes, remoteAddress }) =>
          process.stderr.write(`${new Date().toISOString()} ${remoteAddress} ${method} ${JSON.stringify(path).slice(1, -1)} ${status} ${bytes}\n`),
      });
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
