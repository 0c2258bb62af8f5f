import { relative, resolve } from 'node:path';
import { Command } from 'commander';
import type { CreatedNode } from '@psyops/nodeboot';
import { currentWorkspace } from '../context.js';
import { InterruptedError, UsageError } from '../errors.js';
import { ensureGitignore, WORKSPACE_LAYOUT } from '../workspace.js';

// The library loads only when a node command runs.
const nodebootLibrary = () => import('@psyops/nodeboot');

const NODES_DIR = WORKSPACE_LAYOUT.nodes;

const print = (text: string) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
/** With --json, the human text goes to stderr: stdout carries the JSON alone. */
const printHuman = (text: string) => process.stderr.write(text.endsWith('\n') ? text : `${text}\n`);

/**
 * Runs `work` with SIGINT and SIGTERM turned into an abort of `signal` (a repeated signal does not
 * kill the process half-way through its clean-up); the listeners are removed afterwards.
 */
async function interruptible<T>(work: (signal: AbortSignal, received: () => NodeJS.Signals | undefined) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    received ??= signal;
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await work(controller.signal, () => received);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

interface CreateOptions {
  mac: string;
  interfaces?: string;
  siteUrl?: string;
  testonlyToor?: boolean;
  out?: string;
  dir?: string;
  force?: boolean;
  rekey?: boolean;
  lighthouse?: string[];
  json?: boolean;
}

/** What `node create --json` prints (one line) once the node is written: the node as created, and what the command did besides. */
type NodeCreateReport = CreatedNode & {
  /** The lines added to the workspace's .gitignore (empty when none were needed). */
  gitignored: string[];
  testonlyToor: boolean;
  rekeyed: boolean;
};

/** --lighthouse may be repeated and may hold a comma list: every endpoint, in order. */
const collectEndpoints = (value: string, previous: string[] | undefined) => [...(previous ?? []), ...value.split(',').map((part) => part.trim())];

function createCommand(): Command {
  return new Command('create')
    .summary("make a node's secret volume and record its public keys")
    .description(
      'Generate everything a node individuates itself from, on its psyops-secret volume: nodename, age.key (an age ' +
        'X25519 identity), minisign.pubkey (the workspace key that signs its config), ssh_host_ed25519_key (OpenSSH), ' +
        'mactab (psy0 MAC), network.interfaces (DHCP on psy0 unless --interfaces), psynet.host.crt/.key and ' +
        'psynet.ca.crt (an address allocated and signed in the psynet registry as role node, or lighthouse), site.url with --site-url, ' +
        'and TESTONLYNOPROD.env with --testonly-toor.\n' +
        `The public parts (age recipient, SSH public key, psynet address) are recorded in ${NODES_DIR}/NAME.json; its ` +
        'config section is kept as written. The private parts exist only on the volume. --out writes an ext4 image ' +
        'labelled psyops-secret for a USB stick (dd it there); --dir writes the files only; the directory they go into ' +
        'must exist. Every input is checked before the psynet registry is touched: a refused command changes nothing.\n' +
        `A node that exists already (${NODES_DIR}/NAME.json records its keys, or the psynet registry has NAME) is refused: ` +
        'creating it again would replace its keys, and its current volume could no longer decrypt its config. --rekey ' +
        'does that on purpose: new age identity, SSH host key and psynet certificate (its psynet address is kept), and ' +
        'prints what it replaced. -f only allows replacing an existing image or folder at the output path.\n' +
        '--lighthouse HOST:PORT (repeatable, or a comma list) makes the node a psynet lighthouse: its address comes from ' +
        'the lighthouse pool, its certificate carries the lighthouses group, and NAME.json records its fixed underlay ' +
        'endpoints as "psynet": {"role": "lighthouse", "underlay": ["192.168.77.1:4242"]}. HOST is an IPv4 address, an IPv6 ' +
        'address in brackets ([2001:db8::1]:4242) or a host name; every endpoint has the same port, which the node ' +
        'listens on. site build publishes them in psynet/lighthouses.json (followed by any psynet.lighthouses addresses ' +
        'psyops.config.json gives it), and the node that finds itself there runs Nebula as a lighthouse. --rekey keeps a ' +
        "lighthouse a lighthouse, with its recorded endpoints unless --lighthouse gives new ones; a plain node can't " +
        'become a lighthouse in place (nor the reverse): release it from the psynet registry first.\n' +
        'The volume is made in a 0700 temporary directory beside the output (an image is 0600 from its creation, whatever ' +
        'the umask) and renamed into place once complete: no private key is ever readable by other users. Interrupted ' +
        '(Ctrl-C, SIGTERM) before then, it removes what it made, takes the psynet allocation back and writes nothing; it ' +
        'exits 130 (143 for SIGTERM).\n' +
        'An output inside the workspace is added to its .gitignore.',
    )
    .argument('<NAME>', 'node name: lower-case letters, digits and dashes')
    .requiredOption('--mac <MAC>', 'MAC address of the network card that becomes psy0 (required)')
    .option('--interfaces <FILE>', 'network.interfaces for the node (default: DHCP on psy0)')
    .option('--site-url <URL>', "the site this node configures itself from, overriding the image's")
    .option('--testonly-toor', 'TEST ONLY: the node adds user toor with a blank password')
    .option('--out <IMAGE>', 'write an ext4 image labelled psyops-secret')
    .option('--dir <DIR>', 'write the files into DIR')
    .option('-f, --force', 'replace an existing image or folder at the output path (never a node: see --rekey)')
    .option('--rekey', "replace an existing node's keys and certificate (its old secret volume stops working)")
    .option(
      '--lighthouse <HOST:PORT>',
      'make the node a psynet lighthouse reached at HOST:PORT on the underlay (repeatable, or a comma list)',
      collectEndpoints,
    )
    .option('--json', 'print one JSON object about the node to stdout, and the human text to stderr (see the README)')
    .action(async (name: string, options: CreateOptions, cmd: Command) => {
      if ((options.out === undefined) === (options.dir === undefined)) throw new UsageError('give exactly one of --out IMAGE and --dir DIR');
      const { createNode, SECRET_LABEL } = await nodebootLibrary();
      const workspace = await currentWorkspace(cmd);
      const { network, pools } = workspace.config.psynet;
      await interruptible(async (signal, received) => {
        const node = await createNode({
          name,
          mac: options.mac,
          output: options.out !== undefined ? { kind: 'image', path: resolve(options.out) } : { kind: 'dir', path: resolve(options.dir!) },
          force: options.force ?? false,
          rekey: options.rekey ?? false,
          minisignPublicKeyFile: workspace.path(workspace.config.signing.publicKey),
          ...(options.interfaces !== undefined ? { interfacesFile: options.interfaces } : {}),
          ...(options.siteUrl !== undefined ? { siteUrl: options.siteUrl } : {}),
          testonlyToor: options.testonlyToor ?? false,
          ...(options.lighthouse !== undefined ? { lighthouse: { underlay: options.lighthouse } } : {}),
          psynet: { dir: workspace.place('psynet'), plan: { network, pools } },
          nodesDir: workspace.place('nodes'),
          signal,
        }).catch((error: unknown) => {
          const by = received();
          if (by === undefined) throw error;
          throw new InterruptedError(
            `interrupted by ${by}: nothing was written (no secret volume, no change to ${NODES_DIR}/${name}.json or the psynet registry)`,
            { signal: by, cause: error },
          );
        });
        const ignored = await ensureGitignore(workspace, [{ path: node.output.path, directory: node.output.kind === 'dir' }]);
        const was = (value: string | undefined) => ` (was ${value ?? 'not recorded'})`;
        const { replaced } = node;
        const asLighthouse =
          node.role === 'lighthouse' ? `, lighthouse at ${node.underlay?.join(' ') || 'the addresses psynet.lighthouses in psyops.config.json gives it'}` : '';
        const gitignored = ignored.filter((line) => !line.startsWith('#'));
        if (options.json) {
          const report: NodeCreateReport = {
            ...node,
            // A lighthouse always says where it is reached (empty: psyops.config.json gives it).
            ...(node.role === 'lighthouse' ? { underlay: node.underlay ?? [] } : {}),
            gitignored: gitignored.filter((line) => line !== ''),
            testonlyToor: options.testonlyToor ?? false,
            rekeyed: replaced !== undefined,
          };
          print(JSON.stringify(report));
        }
        (options.json ? printHuman : print)(
          [
            `${name}: secret volume written to ${node.output.path} (${node.output.kind === 'image' ? `ext4 image labelled ${SECRET_LABEL}` : 'files'})`,
            ...(replaced
              ? [
                  `  REKEYED: the keys and psynet certificate of the existing node ${name} were replaced; its old secret volume no longer matches it`,
                  `  psynet ${node.psynetAddress}${replaced.psynetAddress === node.psynetAddress ? ' (kept)' : was(replaced.psynetAddress)}${asLighthouse}`,
                  `  age recipient ${node.ageRecipient}${was(replaced.ageRecipient)}`,
                  `  ssh host key ${node.sshHostPublicKey}`,
                  `  ssh host key fingerprint ${node.sshHostKeyFingerprint}${was(replaced.sshHostKeyFingerprint)}`,
                  `  psynet certificate ${node.certificateFingerprint}${was(replaced.certificateFingerprint)}`,
                  ...(replaced.certificateNotAfter
                    ? [`  the old psynet certificate stays valid until ${replaced.certificateNotAfter}: destroy the old volume's psynet.host.key`]
                    : []),
                ]
              : [
                  `  psynet ${node.psynetAddress}${asLighthouse}`,
                  `  age recipient ${node.ageRecipient}`,
                  `  ssh host key ${node.sshHostPublicKey}`,
                  `  ssh host key fingerprint ${node.sshHostKeyFingerprint}`,
                  `  psynet certificate ${node.certificateFingerprint}`,
                ]),
            `  recorded in ${relative(process.cwd(), node.definitionFile) || node.definitionFile}`,
            ...(ignored.length > 0 ? [`  added to .gitignore: ${gitignored.join(' ')}`] : []),
            ...(options.testonlyToor ? ['  WARNING: --testonly-toor: this volume adds user toor with a blank password; never use it in production'] : []),
          ].join('\n'),
        );
        // A signal that came once the volume was in place did not stop the node (it is complete), but still ends with its exit code.
        const late = received();
        if (late !== undefined) throw new InterruptedError(`interrupted by ${late} after node ${name} was written: it is complete`, { signal: late });
      });
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
    .requiredOption('--out <IMAGE>', 'the image to write (required)')
    .option('--size <MIB>', 'size in MiB', '16')
    .option('-f, --force', 'replace an existing image')
    .option('--json', 'print one JSON object about the image to stdout, and the human text to stderr (see the README)')
    .action(async (options: { out: string; size: string; force?: boolean; json?: boolean }) => {
      const lib = await nodebootLibrary();
      const sizeMiB = Number(options.size);
      const output = resolve(options.out);
      await lib.writeStateImage(output, { sizeMiB, force: options.force ?? false });
      if (options.json) print(JSON.stringify({ path: output, label: lib.STATE_LABEL, sizeMiB }));
      (options.json ? printHuman : print)(`state volume written to ${output} (ext4 image labelled ${lib.STATE_LABEL}, ${sizeMiB} MiB)`);
    });
}

function knownHostsCommand(): Command {
  return new Command('known-hosts')
    .summary("OpenSSH known_hosts lines for the workspace's nodes")
    .description(
      `Print one known_hosts line per node from the SSH host public key node create recorded in ${NODES_DIR}/NAME.json, ` +
        'for its name, name.<psynet.domain> and psynet address, e.g. "node-a,node-a.psynet.internal,10.10.10.5 ssh-ed25519 AAAA…". ' +
        'Append them to ~/.ssh/known_hosts (or point UserKnownHostsFile at them) and ssh reaches the nodes without trusting a ' +
        'first connection. Without NAME every node that records a key, by name; a NAME without a definition or without a key ' +
        'is an error. Run it again after node create --rekey.',
    )
    .argument('[NAME...]', 'node names (default: every node)')
    .option('--json', 'print a JSON array of {name, address, key}')
    .action(async (names: string[], options: { json?: boolean }, cmd: Command) => {
      const workspace = await currentWorkspace(cmd);
      const { readKnownHosts, knownHostsLine } = await nodebootLibrary();
      const hosts = await readKnownHosts(workspace.place('nodes'), names);
      if (options.json) print(JSON.stringify(hosts, null, 2));
      else if (hosts.length > 0) print(hosts.map((host) => knownHostsLine(host, workspace.config.psynet.domain)).join('\n'));
    });
}

function statusCommand(): Command {
  return new Command('status')
    .summary("print this node's postboot status")
    .description(`Print the status postboot wrote at the end of this boot (/etc/psyopsOS/status.json) as JSON.`)
    .option('--root <DIR>', "the node's root directory", '/')
    .option('--json', 'the same JSON (the output is JSON with or without it)')
    .action(async (options: { root: string }) => {
      const { readNodeStatus } = await nodebootLibrary();
      print(JSON.stringify(await readNodeStatus(resolve(options.root)), null, 2));
    });
}

export function nodeCommand(): Command {
  const node = new Command('node')
    .summary('psyopsOS nodes: secret volumes, known hosts and boot status')
    .description(
      "Create a node's psyops-secret volume (node create) and an optional psyops-state volume (node state-image), " +
        "print the nodes' SSH host keys as known_hosts lines (node known-hosts), and read what postboot reported on a node (node status).",
    );
  node.addCommand(createCommand());
  node.addCommand(stateImageCommand());
  node.addCommand(knownHostsCommand());
  node.addCommand(statusCommand());
  // As psynet: subcommands inherit the program's one-line errors and exit override.
  const inherit = (parent: Command, sub: Command) => {
    sub.copyInheritedSettings(parent);
    for (const nested of sub.commands) inherit(sub, nested);
  };
  node.hook('preSubcommand', (parent, sub) => inherit(parent, sub));
  return node;
}
