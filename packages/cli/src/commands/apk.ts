import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Command, Option } from 'commander';
import { FileAccessError, fileAccessError, PsyopsError, writeFilesAtomically } from '@psyops/core';
import { currentWorkspace, sourceDateEpoch } from '../context.js';
import { NoWorkspaceError } from '../workspace.js';

/** A signing key is required unless --unsigned is given explicitly. */
class ApkKeyMissingError extends PsyopsError {
  override readonly code = 'APK_KEY_MISSING';
}

// The apk library is loaded only by the apk commands, keeping `psyops --help` fast.
const apkpkg = () => import('@psyops/apkpkg');

interface SigningOptions {
  key?: string;
  keyName?: string;
  unsigned?: boolean;
  signatureType: 'RSA' | 'RSA256' | 'RSA512';
}

function addSigningOptions(command: Command): Command {
  return command
    .option('--key <FILE>', 'abuild-style RSA private key (default: the only keys/apk/*.rsa of the workspace)')
    .option('--key-name <NAME>', 'public key file name the signature refers to (default: key file name + .pub, like abuild)')
    .option('--unsigned', 'write without a signature (apk then needs --allow-untrusted)')
    .addOption(
      new Option('--signature-type <TYPE>', 'RSA = SHA-1 (abuild 3.11, every apk 2), RSA256 = SHA-256, RSA512 = SHA-512')
        .choices(['RSA', 'RSA256', 'RSA512'])
        .default('RSA'),
    );
}

/** The signing key and the path it was read from (psyopsOS-base ships the matching .pub). */
async function signingKeyPath(command: Command, options: SigningOptions): Promise<string> {
  if (options.key) return options.key;
  let dir: string;
  try {
    const workspace = await currentWorkspace(command);
    dir = workspace.place('apkKeys');
  } catch (error) {
    // Only "no workspace" means "give --key": a broken config must say so itself.
    if (!(error instanceof NoWorkspaceError)) throw error;
    throw new ApkKeyMissingError('no --key given and not in a psyops workspace; pass --key FILE or --unsigned');
  }
  const keys = existsSync(dir) ? (await readdir(dir)).filter((n) => n.endsWith('.rsa')).sort() : [];
  if (keys.length !== 1) {
    throw new ApkKeyMissingError(
      keys.length === 0
        ? `no --key given and no ${dir}/*.rsa; run \`psyops apk keygen --name EMAIL\` or pass --unsigned`
        : `several keys in ${dir} (${keys.join(', ')}); pick one with --key`,
    );
  }
  return join(dir, keys[0]!);
}

async function signingKey(command: Command, options: SigningOptions) {
  const { readSigningKey } = await apkpkg();
  if (options.unsigned) {
    if (options.key) throw new ApkKeyMissingError('--key and --unsigned contradict each other');
    return undefined;
  }
  const path = await signingKeyPath(command, options);
  return readSigningKey(path, options.keyName);
}

function epochNow(): number {
  return sourceDateEpoch() ?? Math.floor(Date.now() / 1000);
}

function buildCommand(): Command {
  const command = new Command('build')
    .summary('build an .apk from a JSON or YAML package spec')
    .description(
      'Build a signed Alpine package from SPEC (JSON or YAML): name, version (e.g. 1.2.3-r0), arch (or noarch), ' +
        'description, url, license; optional origin, maintainer, packager, commit, depends, provides, install_if, ' +
        'replaces, replaces_priority, provider_priority, triggers, scripts {pre-install: FILE, …}, tree (a directory ' +
        'copied as the package root) and files [{path, mode, content|contentBase64|source, type: file|dir|symlink, ' +
        'target, uid, gid}]. Paths are relative to the spec file. Timestamps come from $SOURCE_DATE_EPOCH (else now): ' +
        'the same spec and SOURCE_DATE_EPOCH give the same bytes. Writes OUT/<name>-<version>.apk.',
    )
    .argument('<SPEC>', 'package spec file (.json, .yaml or .yml)')
    .requiredOption('--out <DIR>', 'directory to write the package into (required)');
  addSigningOptions(command);
  return command.action(async (specPath: string, options: SigningOptions & { out: string }) => {
    const { readSpecFile, buildPackage } = await apkpkg();
    const { spec, baseDir } = await readSpecFile(specPath);
    const key = await signingKey(command, options);
    const built = await buildPackage(spec, {
      sourceDateEpoch: epochNow(),
      baseDir,
      signatureType: options.signatureType,
      ...(key ? { key } : {}),
    });
    const path = join(options.out, built.fileName);
    await writeFilesAtomically([{ path, data: built.bytes, mode: 0o644 }]);
    process.stdout.write(`${path} (${built.bytes.length} bytes, ${key ? `signed by ${key.keyName}` : 'unsigned'}, C:${built.identity})\n`);
  });
}

interface ProjectOptions extends SigningOptions {
  out?: string;
  arch: string;
  pkgVersion?: string;
  repositoryUrl?: string;
  rootPasswordHash?: string;
  sshKey?: string;
  bundle?: string;
}

async function readOptionalFile(path: string | undefined, fallback: string | undefined, what: string): Promise<string | undefined> {
  const chosen = path ?? (fallback && existsSync(fallback) ? fallback : undefined);
  if (!chosen) return undefined;
  try {
    return await readFile(chosen, 'utf8');
  } catch (error) {
    throw fileAccessError(error, chosen, what);
  }
}

function projectCommand(): Command {
  const command = new Command('project')
    .summary("build psyopsOS's own packages (psyopsOS-base, psyops-nodeboot) from the workspace")
    .description(
      'Build psyopsOS-base or psyops-nodeboot from workspace values and sign it with the workspace APK key. ' +
        'psyopsOS-base installs /etc/apk/keys/<key>.pub, the repository line (<site.url>/apk/psyopsOS), a setup ' +
        "script setting root's password hash (keys/root-password.hash, a crypt(3) hash: it is published with the " +
        'package, so make it strong) and SSH key (keys/ssh-authorized-keys), psyopsOS-write-bootmedia and the ' +
        'telepathy status service. psyops-nodeboot packages --bundle (the bundled nodeboot program) and its boot hook. ' +
        'Writes to <workspace>/apk/<arch>/ unless --out is given; run `psyops apk index apk` afterwards.',
    )
    // createArgument, not `new Argument`: commander's CommonJS build does not expose it to ESM importers.
    .addArgument(new Command().createArgument('<NAME>', 'package to build').choices(['psyopsOS-base', 'psyops-nodeboot']))
    .option('--out <DIR>', 'directory to write the package into (default: <workspace>/apk/<arch>)')
    .option('--arch <ARCH>', 'target architecture', 'x86_64')
    .option('--pkg-version <VERSION>', 'package version (default: 1.0.<SOURCE_DATE_EPOCH or now>-r0, like the original psyopsOS)')
    .option('--repository-url <URL>', 'apk repository line for psyopsOS-base (default: <site.url>/apk/psyopsOS)')
    .option('--root-password-hash <FILE>', 'crypt(3) hash for root (default: keys/root-password.hash if present)')
    .option('--ssh-key <FILE>', 'authorized_keys for root (default: keys/ssh-authorized-keys if present)')
    .option('--bundle <FILE>', 'psyops-nodeboot: the bundled nodeboot program');
  addSigningOptions(command);
  return command.action(async (name: string, options: ProjectOptions) => {
    const { buildPackage, psyopsBaseSpec, nodebootSpec, readSigningKey } = await apkpkg();
    const workspace = await currentWorkspace(command);
    const epoch = epochNow();
    const version = options.pkgVersion ?? `1.0.${epoch}-r0`;
    if (options.unsigned) throw new ApkKeyMissingError('psyopsOS packages are always signed: nodes only trust the workspace key');
    const keyPath = await signingKeyPath(command, options);
    const key = await readSigningKey(keyPath, options.keyName);
    let spec;
    if (name === 'psyopsOS-base') {
      const publicKeyPath = join(dirname(keyPath), key.keyName);
      const apkPublicKeyPem = await readOptionalFile(publicKeyPath, undefined, 'APK public key');
      const rootPasswordHash = await readOptionalFile(options.rootPasswordHash, workspace.place('keys', 'root-password.hash'), 'root password hash');
      const sshAuthorizedKeys = await readOptionalFile(options.sshKey, workspace.place('keys', 'ssh-authorized-keys'), 'SSH authorized keys');
      spec = await psyopsBaseSpec({
        version,
        arch: options.arch,
        repositoryUrl: options.repositoryUrl ?? `${workspace.config.site.url.replace(/\/+$/, '')}/apk/psyopsOS`,
        apkKeyName: key.keyName,
        apkPublicKeyPem: apkPublicKeyPem!,
        ...(rootPasswordHash ? { rootPasswordHash } : {}),
        ...(sshAuthorizedKeys ? { sshAuthorizedKeys } : {}),
      });
    } else {
      if (!options.bundle) throw new FileAccessError('psyops-nodeboot needs --bundle FILE (the bundled nodeboot program)', 'FILE_NOT_FOUND', '');
      let bundle: Buffer;
      try {
        bundle = await readFile(options.bundle);
      } catch (error) {
        throw fileAccessError(error, options.bundle, 'nodeboot bundle');
      }
      spec = await nodebootSpec({ version, arch: options.arch, bundle });
    }
    const built = await buildPackage(spec, { sourceDateEpoch: epoch, key, signatureType: options.signatureType });
    const path = join(options.out ?? workspace.place('apk', options.arch), built.fileName);
    await writeFilesAtomically([{ path, data: built.bytes, mode: 0o644 }]);
    process.stdout.write(`${path} (${built.bytes.length} bytes, signed by ${key.keyName}, C:${built.identity})\n`);
  });
}

function keygenCommand(): Command {
  return new Command('keygen')
    .summary('create an abuild-style RSA key pair for signing packages and indexes')
    .description(
      'Create NAME-<hex time>.rsa (private, PKCS#8 PEM, mode 0600) and NAME-<hex time>.rsa.pub (public, ' +
        'SubjectPublicKeyInfo PEM) like abuild-keygen. Install the .rsa.pub file under that exact name in ' +
        '/etc/apk/keys/ of every machine that trusts the repository.',
    )
    .requiredOption('--name <EMAIL>', 'key name, usually the packager e-mail address (required)')
    .option('--out <DIR>', 'directory for the key files (default: keys/apk of the workspace, else the current directory)')
    .addOption(new Option('--bits <N>', 'RSA modulus size').choices(['2048', '3072', '4096', '8192']).default('4096'))
    .action(async (options: { name: string; out?: string; bits: string }, command: Command) => {
      const { generateApkKey } = await apkpkg();
      let dir = options.out;
      if (!dir)
        dir = await currentWorkspace(command).then(
          (w) => w.place('apkKeys'),
          () => '.',
        );
      const key = await generateApkKey({ name: options.name, bits: Number(options.bits) });
      const privatePath = join(dir, key.privateKeyName);
      const publicPath = join(dir, key.keyName);
      for (const path of [privatePath, publicPath]) {
        if (existsSync(path)) throw new FileAccessError(`${path} already exists`, 'FILE_EXISTS', path);
      }
      await writeFilesAtomically([
        { path: privatePath, data: key.privateKeyPem, mode: 0o600 },
        { path: publicPath, data: key.publicKeyPem, mode: 0o644 },
      ]);
      process.stdout.write(`private key: ${privatePath} (0600, keep it secret)\npublic key:  ${publicPath} (copy to /etc/apk/keys/${key.keyName})\n`);
    });
}

function indexCommand(): Command {
  const command = new Command('index')
    .summary('write a signed APKINDEX.tar.gz for each DIR/<arch>/')
    .description(
      'Index every package in DIR/<arch>/ (every arch directory with .apk files, or those given with --arch) and ' +
        'write a signed DIR/<arch>/APKINDEX.tar.gz, as abuild does. noarch packages placed in an arch directory ' +
        'are indexed under that arch (apk fetches DIR/<A:>/<file>). Packages unchanged since the previous index ' +
        '(same size, older than it) are not read again. Timestamp: $SOURCE_DATE_EPOCH, else now.',
    )
    .argument('<DIR>', 'repository directory')
    .option('--description <TEXT>', 'repository description (the DESCRIPTION entry)')
    .option('--arch <ARCH...>', 'only these arch directories');
  addSigningOptions(command);
  return command.action(async (dir: string, options: SigningOptions & { description?: string; arch?: string[] }) => {
    const { indexRepository } = await apkpkg();
    const key = await signingKey(command, options);
    // Progress on a terminal only: a count of the packages read, on one self-updating line.
    let readCount = 0;
    const onRead = process.stderr.isTTY ? () => process.stderr.write(`\rreading packages: ${++readCount}`) : undefined;
    const results = await indexRepository(dir, {
      ...(onRead ? { onRead } : {}),
      sourceDateEpoch: epochNow(),
      signatureType: options.signatureType,
      ...(key ? { key } : {}),
      ...(options.description !== undefined ? { description: options.description } : {}),
      ...(options.arch ? { arches: options.arch } : {}),
    });
    if (readCount > 0) process.stderr.write('\r\x1b[K');
    for (const r of results) process.stdout.write(`${r.path}: ${r.packages} package(s), ${r.read} read, ${key ? `signed by ${key.keyName}` : 'unsigned'}\n`);
  });
}

async function readKeys(keysDir: string | undefined) {
  const { loadKeysDir } = await apkpkg();
  return keysDir === undefined ? undefined : loadKeysDir(keysDir);
}

function verifyCommand(): Command {
  return new Command('verify')
    .summary('verify .apk files and APKINDEX.tar.gz against trusted keys')
    .description(
      'Check each FILE (path or http(s) URL) like `apk verify`: gzip streams, layout, datahash and per-file ' +
        'checksums of packages, and the signature against the public keys in --keys-dir (file names as in ' +
        "/etc/apk/keys; default: the workspace's keys/apk). Unsigned, untrusted, tampered or corrupted input " +
        'fails. Prints "<file>: OK (<key>)".',
    )
    .argument('<FILE...>', '.apk or APKINDEX.tar.gz files or URLs')
    .option('--keys-dir <DIR>', "directory of trusted public keys, like /etc/apk/keys (default: the workspace's keys/apk)")
    .option('--allow-untrusted', 'accept unsigned files and unknown keys (a bad signature by a known key still fails)')
    .action(async (files: string[], options: { keysDir?: string; allowUntrusted?: boolean }, cmd: Command) => {
      const { readSource, apkFileKind, readPackage, readIndex } = await apkpkg();
      const keys = await readKeys(options.keysDir ?? (await currentWorkspace(cmd)).place('apkKeys'));
      for (const file of files) {
        const bytes = await readSource(file);
        const verify = { keys: keys!, allowUntrusted: options.allowUntrusted ?? false, name: file };
        const result = apkFileKind(bytes) === 'package' ? readPackage(bytes, verify) : readIndex(bytes, verify);
        process.stdout.write(`${file}: OK (${result.trustedBy ? `signed by ${result.trustedBy}` : 'UNTRUSTED, allowed'})\n`);
      }
    });
}

function infoCommand(): Command {
  return new Command('info')
    .summary('show what an .apk or APKINDEX.tar.gz contains')
    .description(
      'Print the metadata of a package (.PKGINFO fields, identity, files) or an index (its packages). The file ' +
        'is checked for integrity; its signature is checked only with --keys-dir.',
    )
    .argument('<FILE>', '.apk or APKINDEX.tar.gz file or http(s) URL')
    .option('--json', 'print JSON instead of text')
    .option('--keys-dir <DIR>', 'also verify the signature against these keys')
    .action(async (file: string, options: { json?: boolean; keysDir?: string }) => {
      const { readSource, apkFileKind, readPackage, readIndex } = await apkpkg();
      const bytes = await readSource(file);
      const keys = await readKeys(options.keysDir);
      const verify = { ...(keys ? { keys } : {}), name: file };
      if (apkFileKind(bytes) === 'index') {
        const index = readIndex(bytes, verify);
        const summary = {
          kind: 'index',
          description: index.description ?? null,
          signatures: index.signatures.map((s) => `${s.type}:${s.keyName}`),
          trustedBy: index.trustedBy ?? null,
          packages: index.entries,
        };
        if (options.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
        else {
          process.stdout.write(`index: ${file}\ndescription: ${summary.description ?? ''}\nsigned by: ${summary.signatures.join(', ') || '(unsigned)'}\n`);
          for (const e of index.entries) process.stdout.write(`  ${e.name}-${e.version} ${e.arch ?? ''} ${e.identity}\n`);
        }
        return;
      }
      const pkg = readPackage(bytes, verify);
      const summary = {
        kind: 'package',
        identity: pkg.identity,
        size: pkg.fileSize,
        signatures: pkg.signatures.map((s) => `${s.type}:${s.keyName}`),
        trustedBy: pkg.trustedBy ?? null,
        info: pkg.info,
        scripts: Object.keys(pkg.scripts),
        files: pkg.files,
      };
      if (options.json) {
        process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
        return;
      }
      const i = pkg.info;
      process.stdout.write(
        `${i.pkgname}-${i.pkgver} (${i.arch ?? '?'}): ${i.pkgdesc ?? ''}\n` +
          `identity: ${pkg.identity}\nsize: ${pkg.fileSize} bytes, installed ${i.size ?? 0}\n` +
          `url: ${i.url ?? ''}\nlicense: ${i.license ?? ''}\n` +
          `depends: ${i.depend.join(' ')}\nprovides: ${i.provides.join(' ')}\n` +
          `signed by: ${summary.signatures.join(', ') || '(unsigned)'}\nscripts: ${summary.scripts.join(' ')}\nfiles:\n`,
      );
      for (const f of pkg.files)
        process.stdout.write(`  ${f.mode.toString(8).padStart(4, '0')} ${f.path}${f.type === 'dir' ? '/' : ''}${f.target ? ` -> ${f.target}` : ''}\n`);
    });
}

function versionCommand(): Command {
  return new Command('version')
    .summary('compare two versions like `apk version -t`')
    .description('Print <, = or > for A compared to B, by apk-tools 2 rules (1.0_rc1 < 1.0 < 1.0-r1 < 1.0_p1 < 1.0a). Invalid versions are an error.')
    .argument('<A>', 'first version')
    .argument('<B>', 'second version')
    .action(async (a: string, b: string) => {
      const { compareVersions, versionOrderSymbol } = await apkpkg();
      process.stdout.write(`${versionOrderSymbol(compareVersions(a, b))}\n`);
    });
}

export function apkCommand(): Command {
  const command = new Command('apk')
    .summary('Alpine packages and signed repositories: build, project, keygen, index, verify, info, version')
    .description('Build, sign, index, read and verify Alpine APK v2 packages and repositories without an Alpine host.');
  for (const sub of [buildCommand(), projectCommand(), keygenCommand(), indexCommand(), verifyCommand(), infoCommand(), versionCommand()])
    command.addCommand(sub);
  // createProgram configures `apk` (exit override, one-line errors); pass that on to the subcommand chosen.
  return command.hook('preSubcommand', (apk, sub) => {
    sub.exitOverride().configureOutput(apk.configureOutput());
  });
}
