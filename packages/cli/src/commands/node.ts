import { relative, resolve } from 'node:path';
import { Command } from 'commander';
import { currentWorkspace } from '../context.js';
import { UsageError } from '../errors.js';
import { WORKSPACE_LAYOUT } from '../workspace.js';

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
      if ((options.out === undefined) === (options.dir === undefined)) throw new UsageError('give exactly one of --out IMAGE and --dir DIR');
      const { createNode, SECRET_LABEL } = await nodebootLibrary();
      const workspace = await currentWorkspace(cmd);
      const { network, pools } = workspace.config.psynet;
      const node = await createNode({
        name,
        mac: options.mac,
        output: options.out !== undefined ? { kind: 'image', path: resolve(options.out) } : { kind: 'dir', path: resolve(options.dir!) },
        force: options.force ?? false,
        minisignPublicKeyFile: workspace.path(workspace.config.signing.publicKey),
        ...(options.interfaces !== undefined ? { interfacesFile: options.interfaces } : {}),
        ...(options.siteUrl !== undefined ? { siteUrl: options.siteUrl } : {}),
        testonlyToor: options.testonlyToor ?? false,
        psynet: { dir: workspace.place('psynet'), plan: { network, pools } },
        nodesDir: workspace.place('nodes'),
      });
      print(
        `${name}: secret volume written to ${node.output.path} (${node.output.kind === 'image' ? `ext4 image labelled ${SECRET_LABEL}` : 'files'})\n` +
          `  psynet ${node.psynetAddress}\n  age recipient ${node.ageRecipient}\n  ssh host key ${node.sshHostPublicKey}\n` +
          `  recorded in ${relative(process.cwd(), node.definitionFile) || node.definitionFile}` +
          (options.testonlyToor ? '\n  WARNING: --testonly-toor: this volume adds user toor with a blank password; never use it in production' : ''),
      );
    });
}

function stateImageCommand(): Command {
  return new Command('state-image')
    .summary('make an empty psyops-state volume: where a node keeps its last good config across reboots')
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
