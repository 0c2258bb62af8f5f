import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { Command } from 'commander';
import { writeFilesAtomically, readTextIfExists } from '@psyops/core';
import { obtainPassword, type PasswordSources } from '../password.js';
import {
  ALPINE_KEYS,
  CONFIG_FILE,
  GITIGNORE_FILE,
  GITIGNORE_MARKER,
  SCHEMA_FILE,
  checkNewWorkspaceDir,
  configSchema,
  createWorkspaceFolders,
  defaultConfig,
  WORKSPACE_FOLDERS,
  type WorkspaceConfig,
  workspaceGitignore,
} from '../workspace.js';
import { writeNewKeyPair } from './keygen.js';
import { addPasswordOptions } from './options.js';

interface InitOptions extends PasswordSources {
  password: boolean;
}

/** The .gitignore to write: psyops's rules, after what an existing one in the directory already says. */
async function initialGitignore(path: string, rules: string): Promise<string> {
  const existing = await readTextIfExists(path, 'existing .gitignore');
  if (existing === undefined) return rules;
  if (existing.includes(GITIGNORE_MARKER)) return existing;
  return `${existing}${existing === '' || existing.endsWith('\n') ? '' : '\n'}${rules}`;
}

/** What to run after init, in order, from the workspace's own directory. */
function nextSteps(dir: string): string {
  const rel = relative(process.cwd(), dir);
  const cd = rel === '' ? [] : [[`cd ${/^[\w./@%+=:,-]+$/.test(rel) ? rel : `'${rel.replaceAll("'", "'\\''")}'`}`, '']];
  const steps = [
    ...cd,
    ['psyops apk keygen --name EMAIL', "the workspace's APK signing key (keys/apk)"],
    ['psyops apk project psyopsOS-base', "psyopsOS's own packages into apk/: the default world has them"],
    ['psyops apk project psyops-nodeboot --bundle FILE', ''],
    ['psyops apk index apk', ''],
    ['psyops build-iso', 'build and sign the psyopsOS image into out/'],
    ['psyops psynet ca init --name NAME', 'the psynet (Nebula) certificate authority, once'],
    ['psyops node create NAME --mac MAC --out NAME.img', "a node's psyops-secret volume and its nodes/NAME.json"],
    ['psyops site build', 'the signed site nodes configure themselves from (then site deploy or site serve)'],
    ['git init && git add -A', 'commit the workspace; back up keys/ elsewhere'],
  ];
  const width = Math.max(...steps.map(([command]) => command!.length));
  return `next steps:\n${steps.map(([command, what]) => `  ${what ? `${command!.padEnd(width)}  # ${what}` : command}\n`).join('')}`;
}

/** The repositories a new workspace builds from, and what each is trusted with. */
function repositoriesLine(config: WorkspaceConfig): string {
  const alpine = config.repositories.filter((repository) => repository.alpine !== undefined && repository.keys === ALPINE_KEYS);
  const others = config.repositories.filter((repository) => !alpine.includes(repository));
  return [
    ...(alpine.length > 0
      ? [`Alpine ${alpine.map((r) => r.alpine).join(', ')} from ${config.alpine.mirror}, trusted with Alpine's release keys shipped with psyops`]
      : []),
    ...others.map((r) => `${r.url} (keys: ${r.keys})`),
  ].join('; ');
}

export function initCommand(): Command {
  const command = new Command('init')
    .summary('create a workspace for your own infrastructure data')
    .description(
      'Create a psyops workspace in DIR (default: the current directory): psyops.config.json with every ' +
        `default written out (documented by ${SCHEMA_FILE} beside it), a minisign key pair in keys/, the ` +
        `folders later commands fill (${WORKSPACE_FOLDERS.join(', ')}), and a ${GITIGNORE_FILE} that keeps private keys ` +
        '(minisign secret key, psynet CA and host keys, APK *.rsa), plaintext secrets (secrets/, *.secret), secret volume ' +
        'images (*.img) and build output and caches out of git, so the workspace can be committed (back the keys up ' +
        "elsewhere). The image is built from the workspace's own repository apk/ (psyopsOS-base and psyops-nodeboot, " +
        "made with psyops apk project and psyops apk index) and Alpine's main and community repositories (below " +
        "alpine.mirror), trusted with Alpine's release keys that ship with psyops; a repository of your own is trusted with keys/apk only. " +
        'An existing .gitignore in DIR is kept and the psyops rules are added to it. Refuses a directory that ' +
        'already is a workspace. At the end it prints the next steps.',
    )
    .argument('[DIR]', 'workspace directory', '.')
    .option('--no-password', 'leave the minisign secret key unencrypted');
  addPasswordOptions(command);
  return command.action(async (dirArgument: string, options: InitOptions) => {
    const dir = resolve(dirArgument);
    await checkNewWorkspaceDir(dir);
    const config = await defaultConfig();
    const password = options.password ? await obtainPassword(options, 'the workspace minisign key', true) : null;
    const existed = existsSync(dir);
    const gitignore = await initialGitignore(join(dir, GITIGNORE_FILE), workspaceGitignore(config));
    try {
      await createWorkspaceFolders(dir);
      const { keyId } = await writeNewKeyPair({
        publicKeyPath: join(dir, config.signing.publicKey),
        secretKeyPath: join(dir, config.signing.secretKey),
        password,
      });
      // The config goes last: a directory only counts as a workspace once everything is in it.
      await writeFilesAtomically([
        { path: join(dir, SCHEMA_FILE), data: `${JSON.stringify(configSchema, null, 2)}\n` },
        { path: join(dir, GITIGNORE_FILE), data: gitignore },
        { path: join(dir, CONFIG_FILE), data: `${JSON.stringify(config, null, 2)}\n` },
      ]);
      process.stdout.write(
        `workspace created: ${dir}\n` +
          `  ${CONFIG_FILE}  settings with their defaults (documented in ${SCHEMA_FILE})\n` +
          `  ${config.signing.secretKey}  minisign secret key (${password === null ? 'not encrypted' : 'encrypted'}, 0600; keep it secret)\n` +
          `  ${config.signing.publicKey}  minisign public key, key id ${keyId}\n` +
          `  ${GITIGNORE_FILE}  keeps private keys, secrets, secret volumes and build output out of git\n` +
          `  repositories  ${repositoriesLine(config)}\n` +
          nextSteps(dir),
      );
    } catch (error) {
      if (!existed) await rm(dir, { recursive: true, force: true });
      throw error;
    }
  });
}
