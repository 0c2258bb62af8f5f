import { readFile } from 'node:fs/promises';
import { relative, resolve } from 'node:path';
import { Command } from 'commander';
import { fileAccessError, writeFilesAtomically } from '@psyops/core';
import { currentWorkspace } from '../context.js';
import { UsageError } from '../errors.js';
import { WORKSPACE_LAYOUT, type Workspace } from '../workspace.js';

// The library loads only when a node command runs.
const nodebootLibrary = () => import('@psyops/nodeboot');

const NODES_DIR = WORKSPACE_LAYOUT.nodes;

const print = (text: string) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);

interface CreateOptions {
  mac: string;
  interfaces?: string;
  siteUrl?: string;
  testonlyToor?: boolean;
  out?: string;
  dir?: string;
  force?: boolean;
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw fileAccessError(error, path, what);
  }
}

/** The node's workspace definition, or undefined when there is none yet; a broken one is an error before anything is written. */
async function readDefinition(workspace: Workspace, name: string): Promise<{ path: string; value: Record<string, unknown> | undefined }> {
  const path = workspace.place('nodes', `${name}.json`);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { path, value: undefined };
    throw fileAccessError(error, path, 'node definition');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${path} is not valid JSON (${(error as Error).message}); fix it first, node create keeps its config section`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new UsageError(`${path} is not a JSON object`);
  return { path, value: value as Record<string, unknown> };
}

function createCommand(): Command {
  return new Command('create')
    .summary("make a node's secret volume and record its public keys")
    .description(
      'Generate everything a node individuates itself from, on its psyops-secret volume: nodename, age.key (an age ' +
        'X25519 identity), minisign.pubkey (the workspace key that signs its config), ssh_host_ed25519_key (OpenSSH), ' +
        'mactab (psy0 MAC), network.interfaces (DHCP on psy0 unless --interfaces), psynet.host.crt/.key and ' +
        'psynet.ca.crt (an address allocated and signed in the psynet registry as role node), site.url with --site-url, ' +
        'and TESTONLYNOPROD.env with --testonly-toor.\n' +
        `The public parts (age recipient, SSH public key, psynet address) are recorded in ${NODES_DIR}/NAME.json; its ` +
        'config section is kept as written. The private parts exist only on the volume. --out writes an ext4 image ' +
        'labelled psyops-secret for a USB stick (dd it there); --dir writes the files only. Existing output is never ' +
        'replaced without -f.',
    )
    .argument('<NAME>', 'node name: lower-case letters, digits and dashes')
    .requiredOption('--mac <MAC>', 'MAC address of the network card that becomes psy0')
    .option('--interfaces <FILE>', 'network.interfaces for the node (default: DHCP on psy0)')
    .option('--site-url <URL>', "the site this node configures itself from, overriding the image's")
    .option('--testonly-toor', 'TEST ONLY: the node adds user toor with a blank password')
    .option('--out <IMAGE>', 'write an ext4 image labelled psyops-secret')
    .option('--dir <DIR>', 'write the files into DIR')
    .option('-f, --force', 'replace an existing image or folder')
    .action(async (name: string, options: CreateOptions, cmd: Command) => {
      const lib = await nodebootLibrary();
      if ((options.out === undefined) === (options.dir === undefined)) throw new UsageError('give exactly one of --out IMAGE and --dir DIR');
      // Every check before the first write: a refused command changes nothing.
      lib.checkNodeName(name);
      const mac = lib.normalizeMac(options.mac);
      const output = resolve(options.out ?? options.dir!);
      lib.assertOutputFree(output, options.force ?? false);
      const workspace = await currentWorkspace(cmd);
      const interfaces = options.interfaces !== undefined ? await readText(options.interfaces, 'interfaces file') : undefined;
      const minisignPublicKey = await readText(workspace.path(workspace.config.signing.publicKey), 'workspace minisign public key');
      const base = { name, mac, minisignPublicKey, ...(interfaces !== undefined ? { interfaces } : {}), ...(options.siteUrl !== undefined ? { siteUrl: options.siteUrl } : {}) };
      lib.checkNodeSecretsInput(base);
      const definition = await readDefinition(workspace, name);

      const psynet = await import('@psyops/psynet');
      const settings = workspace.config.psynet;
      const plan = psynet.resolvePlan({ network: settings.network, pools: settings.pools });
      const files = psynet.psynetFiles(workspace.place('psynet'));
      await psynet.readCa(files); // a clear CA_MISSING before the registry changes
      const { host } = await psynet.updateRegistry(files.registry, (registry) =>
        psynet.allocateHost(registry, plan, { name, role: 'node', created: new Date().toISOString().replace(/\.\d+Z$/, 'Z') }),
      );
      if (host.role !== 'node') throw new UsageError(`${name} is a ${host.role} in the psynet registry, not a node`);
      // The node's Nebula key is made here and goes only onto the volume: signing from its public key keeps it out of the workspace.
      const pair = psynet.generateHostKeyPair();
      const signed = await psynet.signHost(files, plan, { name, publicKey: pair.publicKey, now: Math.floor(Date.now() / 1000) });

      const secrets = await lib.generateNodeSecrets({
        ...base,
        testonlyToor: options.testonlyToor ?? false,
        psynet: {
          hostCert: psynet.encodeCertificatePem(signed.cert),
          hostKey: psynet.encodeHostPrivateKey(pair.privateKey),
          caCert: await readText(files.caCert, 'psynet CA certificate'),
        },
      });
      if (options.out !== undefined) await lib.writeSecretImage(output, secrets.files, { force: options.force ?? false });
      else await lib.writeSecretDir(output, secrets.files, { force: options.force ?? false });

      const recorded = {
        ...(definition.value ?? {}),
        ageRecipient: secrets.ageRecipient,
        sshHostPublicKey: secrets.sshHostPublicKey,
        psynetAddress: host.ip,
        config: definition.value?.config ?? { version: 1 },
      };
      await writeFilesAtomically([{ path: definition.path, data: `${JSON.stringify(recorded, null, 2)}\n`, mode: 0o644 }]);

      print(
        `${name}: secret volume written to ${output} (${options.out !== undefined ? `ext4 image labelled ${lib.SECRET_LABEL}` : 'files'})\n` +
          `  psynet ${host.ip}\n  age recipient ${secrets.ageRecipient}\n  ssh host key ${secrets.sshHostPublicKey}\n` +
          `  recorded in ${relative(process.cwd(), definition.path) || definition.path}` +
          (options.testonlyToor ? '\n  WARNING: --testonly-toor: this volume adds user toor with a blank password; never use it in production' : ''),
      );
    });
}

function stateImageCommand(): Command {
  return new Command('state-image')
    .summary("make an empty psyops-state volume: where a node keeps its last good config across reboots")
    .description(
      'Write an empty ext4 image labelled psyops-state (mkfs.ext4: no root, no loop mount), to be written to a disk ' +
        'of the node or attached to a VM. At boot nodeboot mounts a psyops-state volume read-write at /var/lib/psyopsOS ' +
        'and keeps the last good node config there; without one the last good config lives in RAM and is lost at ' +
        'power-off. Any ext4 file system with that label works (mkfs.ext4 -L psyops-state /dev/sdX1). Needs no workspace.',
    )
    .requiredOption('--out <IMAGE>', 'the image to write')
    .option('--size <MIB>', 'size in MiB', '16')
    .option('-f, --force', 'replace an existing image')
    .action(async (options: { out: string; size: string; force?: boolean }) => {
      const lib = await nodebootLibrary();
      const sizeMiB = Number(options.size);
      const output = resolve(options.out);
      await lib.writeStateImage(output, { sizeMiB, force: options.force ?? false });
      print(`state volume written to ${output} (ext4 image labelled ${lib.STATE_LABEL}, ${sizeMiB} MiB)`);
    });
}

function statusCommand(): Command {
  return new Command('status')
    .summary("print this node's postboot status")
    .description(`Print the status postboot wrote at the end of this boot (/etc/psyopsOS/status.json) as JSON.`)
    .option('--root <DIR>', "the node's root directory (default /)", '/')
    .action(async (options: { root: string }) => {
      const { readNodeStatus } = await nodebootLibrary();
      print(JSON.stringify(await readNodeStatus(resolve(options.root)), null, 2));
    });
}

export function nodeCommand(): Command {
  const node = new Command('node')
    .summary('psyopsOS nodes: secret volumes and boot status')
    .description(
      "Create a node's psyops-secret volume (node create) and an optional psyops-state volume (node state-image), " +
        'and read what postboot reported on a node (node status).',
    );
  node.addCommand(createCommand());
  node.addCommand(stateImageCommand());
  node.addCommand(statusCommand());
  // As psynet: subcommands inherit the program's one-line errors and exit override.
  const inherit = (parent: Command, sub: Command) => {
    sub.copyInheritedSettings(parent);
    for (const nested of sub.commands) inherit(sub, nested);
  };
  node.hook('preSubcommand', (parent, sub) => inherit(parent, sub));
  return node;
}
