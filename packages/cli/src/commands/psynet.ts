import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { fileAccessError, writeFilesAtomically } from '@psyops/core';
import { currentWorkspace, sourceDateEpoch } from '../context.js';
import { workspaceLighthouses } from '../lighthouses.js';

// @psyops/psynet (with tweetnacl, ip-cidr, yaml) loads only when a psynet command runs.
const psynetLibrary = () => import('@psyops/psynet');

const ROLE_HELP = 'lighthouse, client or node';

const print = (text: string) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
const printJson = (value: unknown) => print(JSON.stringify(value, null, 2));

/** Unix seconds now, from the real clock: certificate validity must not follow SOURCE_DATE_EPOCH. */
const nowSeconds = () => Math.floor(Date.now() / 1000);

/** RFC 3339 in UTC, whole seconds. */
const isoSeconds = (seconds: number) => new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');

/** The registry's "created" stamp: SOURCE_DATE_EPOCH when set, so a scripted run is reproducible. */
function createdStamp(): string {
  const epoch = sourceDateEpoch();
  return isoSeconds(epoch ?? nowSeconds());
}

async function psynetContext(cmd: Command) {
  const lib = await psynetLibrary();
  const workspace = await currentWorkspace(cmd);
  const settings = workspace.config.psynet;
  const plan = lib.resolvePlan({ network: settings.network, pools: settings.pools });
  const files = lib.psynetFiles(workspace.place('psynet'));
  return { lib, workspace, settings, plan, files };
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw fileAccessError(error, path, what);
  }
}

const splitList = (value: string | undefined): string[] =>
  (value ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');

function allocateCommand(): Command {
  return new Command('allocate')
    .summary('give a host its psynet address (idempotent)')
    .description(
      "Record NAME in the psynet registry (psynet/registry.json) with an address from its role's pool. " +
        'Running it again for the same name returns the same address. New hosts get the lowest address never ' +
        "used in the pool (never one ending in .0, nor the network's broadcast address); addresses of " +
        'released hosts are reused only once the pool has no never-used address left. Safe to run from many ' +
        'processes at once: the registry is locked and replaced atomically.',
    )
    .argument('<NAME>', 'host name, a DNS label (lower-case letters, digits, hyphens)')
    .requiredOption('-r, --role <ROLE>', `host role: ${ROLE_HELP} (required)`)
    .option('--ip <IP>', "a specific address; must be free and inside the role's pool")
    .option('--json', 'print one JSON document (host, whether it was new, registry path)')
    .action(async (name: string, options: { role: string; ip?: string; json?: boolean }, cmd: Command) => {
      const { lib, plan, files } = await psynetContext(cmd);
      const { host, allocated } = await lib.updateRegistry(files.registry, (registry) =>
        lib.allocateHost(registry, plan, { name, role: options.role, created: createdStamp(), ...(options.ip !== undefined ? { ip: options.ip } : {}) }),
      );
      const cidr = `${host.ip}/${plan.network.prefix}`;
      if (options.json) {
        printJson({ ...host, cidr, allocated, files: { registry: files.registry } });
        return;
      }
      print(`${host.name}: ${cidr} (${host.role})${allocated ? '' : ', already allocated'}`);
    });
}

function releaseCommand(): Command {
  return new Command('release')
    .summary('remove a host from the registry; its address is reused last')
    .description(
      'Remove NAME from the psynet registry. Its address goes to the released list and is handed out again ' +
        'only when its pool has no never-used address left. Its certificate stays valid until it expires: add ' +
        'its fingerprint to pki.blocklist on the other hosts to cut it off sooner.',
    )
    .argument('<NAME>', 'host name')
    .option('--json', 'print one JSON document')
    .action(async (name: string, options: { json?: boolean }, cmd: Command) => {
      const { lib, files } = await psynetContext(cmd);
      const host = await lib.updateRegistry(files.registry, (registry) => lib.releaseHost(registry, name));
      if (options.json) printJson({ released: host, files: { registry: files.registry } });
      else
        print(
          `${host.name}: released ${host.ip}${host.certificate ? ` (certificate ${host.certificate.fingerprint} stays valid until ${host.certificate.notAfter})` : ''}`,
        );
    });
}

function caCommand(): Command {
  const ca = new Command('ca')
    .summary('the psynet Nebula certificate authority')
    .description('Create and inspect the psynet Nebula CA (psynet/ca.crt, psynet/ca.key).');
  ca.command('init')
    .summary('create the psynet CA')
    .description(
      'Create an Ed25519 Nebula CA (v1 format, as nebula-cert 1.6.1 makes it) in psynet/ca.crt and ' +
        'psynet/ca.key (mode 0600; keep it secret and backed up). The CA may only sign addresses inside the ' +
        'psynet network. Refuses to replace an existing CA: every host certificate depends on it.',
    )
    .requiredOption('-n, --name <NAME>', 'CA name, shown in every certificate it signs (required)')
    .option('-d, --duration <DURATION>', 'lifetime, in hours/minutes/seconds like nebula-cert (e.g. 87600h)', '876000h')
    .option('--json', 'print one JSON document (fingerprint, validity, paths)')
    .action(async (options: { name: string; duration: string; json?: boolean }, cmd: Command) => {
      const { lib, plan, files } = await psynetContext(cmd);
      const durationSeconds = lib.parseDuration(options.duration);
      const { cert, fingerprint } = await lib.initCa(files, { name: options.name, durationSeconds, now: nowSeconds(), network: plan.network });
      const notAfter = isoSeconds(cert.details.notAfter);
      if (options.json) {
        printJson({
          name: cert.details.name,
          fingerprint,
          notBefore: isoSeconds(cert.details.notBefore),
          notAfter,
          files: { certificate: files.caCert, key: files.caKey },
        });
        return;
      }
      print(
        `CA "${cert.details.name}" created, valid until ${notAfter}\n  fingerprint ${fingerprint}\n  certificate ${files.caCert}\n  key ${files.caKey} (0600, keep it secret)`,
      );
    });
  return ca;
}

function signCommand(): Command {
  return new Command('sign')
    .summary('issue the Nebula certificate of an allocated host')
    .description(
      "Sign a Nebula host certificate for NAME with its allocated address and the network's prefix length " +
        '(e.g. 10.10.10.1/22), the group of its role (lighthouses, clients or psyopsOS) plus --groups. ' +
        'Without --in-pub a new X25519 key pair is made (psynet/hosts/NAME.key, 0600); phones and other ' +
        'devices that make their own key pass their public key with --in-pub. Writes psynet/hosts/NAME.crt ' +
        'and records the fingerprint and expiry in the registry. Signing again renews the certificate.',
    )
    .argument('<NAME>', 'an allocated host name')
    .option('-g, --groups <GROUPS>', 'extra groups, comma-separated')
    .option('-d, --duration <DURATION>', 'lifetime like 8760h; default: until one second before the CA expires; never past the CA')
    .option('--in-pub <FILE>', "the host's own X25519 public key (nebula-cert keygen -out-pub)")
    .option('--json', 'print one JSON document (certificate fields, fingerprint, paths)')
    .action(async (name: string, options: { groups?: string; duration?: string; inPub?: string; json?: boolean }, cmd: Command) => {
      const { lib, plan, files } = await psynetContext(cmd);
      const durationSeconds = options.duration !== undefined ? lib.parseDuration(options.duration) : undefined;
      const publicKey = options.inPub !== undefined ? lib.parseHostPublicKey(await readText(options.inPub, 'host public key'), options.inPub) : undefined;
      const signed = await lib.signHost(files, plan, {
        name,
        extraGroups: splitList(options.groups),
        now: nowSeconds(),
        ...(durationSeconds !== undefined ? { durationSeconds } : {}),
        ...(publicKey ? { publicKey } : {}),
      });
      const json = lib.certificateToJson(signed.cert);
      if (options.json) {
        printJson({
          name: signed.host.name,
          role: signed.host.role,
          ip: json.details.ips[0],
          groups: signed.host.groups,
          fingerprint: signed.fingerprint,
          notBefore: isoSeconds(signed.cert.details.notBefore),
          notAfter: isoSeconds(signed.cert.details.notAfter),
          files: { certificate: signed.certPath, ...(signed.keyPath ? { key: signed.keyPath } : {}), registry: files.registry },
        });
        return;
      }
      print(
        `${name}: signed ${json.details.ips[0]} groups ${signed.host.groups.join(',')} until ${isoSeconds(signed.cert.details.notAfter)}\n` +
          `  fingerprint ${signed.fingerprint}\n  certificate ${signed.certPath}${signed.keyPath ? `\n  key ${signed.keyPath} (0600)` : ''}`,
      );
    });
}

function printCommand(): Command {
  return new Command('print')
    .summary('show a Nebula certificate (like nebula-cert print)')
    .description('Print every certificate in FILE, in the same text or JSON form as nebula-cert print (times in the local zone).')
    .argument('<FILE>', 'certificate file (PEM)')
    .option('--json', 'one JSON object per certificate, as nebula-cert print -json')
    .action(async (file: string, options: { json?: boolean }) => {
      const lib = await psynetLibrary();
      const certs = lib.parseCertificatesPem(await readText(file, 'certificate'), file);
      print(certs.map((cert) => (options.json ? lib.formatCertificateJson(cert) : lib.formatCertificateText(cert))).join('\n'));
    });
}

function verifyCommand(): Command {
  return new Command('verify')
    .summary('check a certificate against the CA (like nebula-cert verify)')
    .description(
      "Check that the first certificate in FILE was signed by the CA, is valid now and stays within the CA's limits. " +
        "The CA is the workspace's psynet/ca.crt unless --ca names a file (which may hold several CA certificates).",
    )
    .argument('<FILE>', 'certificate file (PEM)')
    .option('--ca <FILE>', 'CA certificate file (default: the workspace CA)')
    .option('--json', 'print one JSON document on success')
    .action(async (file: string, options: { ca?: string; json?: boolean }, cmd: Command) => {
      const lib = await psynetLibrary();
      let caPath = options.ca;
      if (caPath === undefined) {
        const files = lib.psynetFiles((await currentWorkspace(cmd)).place('psynet'));
        await lib.readCaCertificate(files); // a clear CA_MISSING when there is none
        caPath = files.caCert;
      }
      const now = nowSeconds();
      const pool = lib.parseCaPool(await readText(caPath, 'CA certificate'), now, caPath);
      const cert = lib.parseCertificatePem(await readText(file, 'certificate'), file);
      const ca = lib.verifyCertificate(cert, pool, now);
      const result = {
        file,
        name: cert.details.name,
        fingerprint: lib.certificateFingerprint(cert),
        ca: ca.details.name,
        caFingerprint: lib.certificateFingerprint(ca),
      };
      if (options.json) printJson({ valid: true, ...result });
      else print(`${file}: valid certificate for ${result.name}, signed by CA "${result.ca}"`);
    });
}

function configCommand(): Command {
  return new Command('config')
    .summary("write a host's Nebula config.yaml")
    .description(
      'Write the Nebula config of NAME: pki, static_host_map and lighthouse hosts at the addresses the site publishes ' +
        '(the underlay endpoints of psyopsOS lighthouses, from node create --lighthouse, and psynet.lighthouses in psyops.config.json), ' +
        'am_lighthouse for lighthouses (they listen on the port of their first underlay endpoint, else psynet.lighthousePort), punchy, tun, and the default firewall: outbound anything; inbound ' +
        'ICMP from anyone and anything from group clients. By default the CA, certificate and key are inlined ' +
        '(the file is then 0600); --pki-dir refers to files on the host instead. Check it with nebula -test ' +
        '-config.',
    )
    .argument('<NAME>', 'a signed host')
    .option('-o, --out <FILE>', 'where to write it (default psynet/hosts/NAME.yml); - prints it')
    .option('--pki-dir <DIR>', 'refer to DIR/ca.crt, DIR/host.crt and DIR/host.key on the host instead of inlining them')
    .action(async (name: string, options: { out?: string; pkiDir?: string }, cmd: Command) => {
      const { lib, workspace, settings, files } = await psynetContext(cmd);
      const registry = await lib.readRegistry(files.registry);
      const host = lib.findHost(registry, name);
      if (!host.certificate) throw new lib.NebulaConfigError(`${name} has no certificate yet: psyops psynet sign ${name}`);
      // Nebula refuses to start on an expired certificate or a key that is not its pair: say so now.
      const now = nowSeconds();
      const ca = await readText(files.caCert, 'CA certificate');
      const cert = await readText(files.hostCert(name), 'host certificate');
      const parsedCert = lib.parseCertificatePem(cert, files.hostCert(name));
      lib.verifyCertificate(parsedCert, lib.parseCaPool(ca, now, files.caCert), now);
      let pki: import('@psyops/psynet').PkiSource;
      if (options.pkiDir !== undefined) {
        pki = { paths: { ca: join(options.pkiDir, 'ca.crt'), cert: join(options.pkiDir, 'host.crt'), key: join(options.pkiDir, 'host.key') } };
      } else {
        let key: string;
        try {
          key = await readFile(files.hostKey(name), 'utf8');
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw fileAccessError(error, files.hostKey(name), 'host key');
          throw new lib.NebulaConfigError(
            `${name} has no private key in the workspace (signed from its own public key?): use --pki-dir to refer to its key on the host`,
          );
        }
        const publicKey = lib.hostPublicKeyOf(lib.parseHostPrivateKey(key, files.hostKey(name)));
        if (!Buffer.from(publicKey).equals(parsedCert.details.publicKey)) {
          throw new lib.NebulaConfigError(`${files.hostKey(name)} is not the key of ${files.hostCert(name)}; sign ${name} again`);
        }
        pki = { inline: { ca, cert, key } };
      }
      // The same lighthouses and addresses as the site publishes to nodes; a psyopsOS lighthouse listens where its definition says.
      const { lighthouses, listenPorts } = await workspaceLighthouses(workspace, { allowUnaddressed: true });
      const lighthouseEndpoints = Object.fromEntries(lighthouses.map((lighthouse) => [lighthouse.name, lighthouse.publicAddresses]));
      const lighthousePort = listenPorts.get(name) ?? settings.lighthousePort;
      const yaml = lib.nebulaConfig({ host, registry, lighthouseEndpoints, pki, lighthousePort });
      if (options.out === '-') {
        print(yaml);
        return;
      }
      const out = options.out !== undefined ? resolve(options.out) : files.hostConfig(name);
      await writeFilesAtomically([{ path: out, data: yaml, mode: 'inline' in pki ? 0o600 : 0o644 }]);
      print(`${name}: Nebula config written to ${out}${'inline' in pki ? ' (0600: it holds the private key)' : ''}`);
    });
}

function listCommand(): Command {
  return new Command('list')
    .summary('show the psynet registry')
    .description('List every host of the psynet registry: name, role, address, groups, certificate expiry.')
    .option('--json', 'print the registry as one JSON document')
    .action(async (options: { json?: boolean }, cmd: Command) => {
      const { lib, plan, files } = await psynetContext(cmd);
      const registry = await lib.readRegistry(files.registry);
      if (options.json) {
        printJson({ network: plan.network.text, hosts: registry.hosts, released: registry.released, files: { registry: files.registry } });
        return;
      }
      if (registry.hosts.length === 0) {
        print('no hosts yet (psyops psynet allocate NAME --role ROLE)');
        return;
      }
      const rows = registry.hosts.map((host) => [
        host.name,
        host.role,
        host.ip,
        host.groups.join(','),
        host.certificate ? `until ${host.certificate.notAfter}` : 'not signed',
      ]);
      const widths = [0, 1, 2, 3].map((column) => Math.max(...rows.map((row) => row[column]!.length)));
      print(rows.map((row) => row.map((cell, column) => (column < 4 ? cell.padEnd(widths[column]!) : cell)).join('  ')).join('\n'));
    });
}

function hostsCommand(): Command {
  return new Command('hosts')
    .summary('print an /etc/hosts fragment for psynet')
    .description('Print "address name.domain name" lines for every host in the registry, by address.')
    .option('--domain <DOMAIN>', 'domain appended to names (default psynet.domain from the config)')
    .action(async (options: { domain?: string }, cmd: Command) => {
      const { lib, settings, files } = await psynetContext(cmd);
      print(lib.hostsFragment(await lib.readRegistry(files.registry), options.domain ?? settings.domain));
    });
}

function dnsCommand(): Command {
  return new Command('dns')
    .summary('print DNS records (name -> address) as JSON')
    .description('Print one JSON document {zone, records: [{name, type: "A", address, fqdn}]} for a DNS zone.')
    .option('--zone <ZONE>', 'zone name (default psynet.domain from the config)')
    .action(async (options: { zone?: string }, cmd: Command) => {
      const { lib, settings, files } = await psynetContext(cmd);
      printJson(lib.dnsRecords(await lib.readRegistry(files.registry), options.zone ?? settings.domain));
    });
}

export function psynetCommand(): Command {
  const psynet = new Command('psynet')
    .summary('the psynet Nebula overlay: addresses, CA, certificates, configs')
    .description(
      'Manage psynet, the Nebula overlay every psyopsOS node joins: the address registry ' +
        '(psynet/registry.json), the Nebula CA, host certificates and configs, and hosts/DNS exports.',
    );
  for (const sub of [
    allocateCommand(),
    releaseCommand(),
    caCommand(),
    signCommand(),
    printCommand(),
    verifyCommand(),
    configCommand(),
    listCommand(),
    hostsCommand(),
    dnsCommand(),
  ]) {
    psynet.addCommand(sub);
  }
  // The program configures `psynet` (exit override, one-line errors) after this returns; pass
  // that on to the subcommands when one is chosen, so their usage errors follow the same contract.
  const inherit = (parent: Command, sub: Command) => {
    sub.copyInheritedSettings(parent);
    for (const nested of sub.commands) inherit(sub, nested);
  };
  psynet.hook('preSubcommand', (parent, sub) => inherit(parent, sub));
  return psynet;
}
