import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { writeFilesAtomically } from '@psyops/core';
import { obtainPassword, type PasswordSources } from '../password.js';
import { CONFIG_FILE, SCHEMA_FILE, checkNewWorkspaceDir, configSchema, createWorkspaceFolders, defaultConfig, WORKSPACE_FOLDERS } from '../workspace.js';
import { writeNewKeyPair } from './keygen.js';
import { addPasswordOptions } from './options.js';

interface InitOptions extends PasswordSources {
  password: boolean;
}

const GITIGNORE = `# Build output and caches: made again from what is committed.
/site/
/out/
/cache/
`;

export function initCommand(): Command {
  const command = new Command('init')
    .summary('create a workspace for your own infrastructure data')
    .description(
      'Create a psyops workspace in DIR (default: the current directory): psyops.config.json with every\n' +
        `default written out (documented by ${SCHEMA_FILE} beside it), a minisign key pair in keys/, and the\n` +
        `folders later commands fill (${WORKSPACE_FOLDERS.join(', ')}). Refuses a directory that already is a workspace.`,
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
        { path: join(dir, '.gitignore'), data: GITIGNORE },
        { path: join(dir, CONFIG_FILE), data: `${JSON.stringify(config, null, 2)}\n` },
      ]);
      process.stdout.write(
        `workspace created: ${dir}\n` +
          `  ${CONFIG_FILE}  settings with their defaults (documented in ${SCHEMA_FILE})\n` +
          `  ${config.signing.secretKey}  minisign secret key (${password === null ? 'not encrypted' : 'encrypted'}, 0600; keep it secret)\n` +
          `  ${config.signing.publicKey}  minisign public key, key id ${keyId}\n`,
      );
    } catch (error) {
      if (!existed) await rm(dir, { recursive: true, force: true });
      throw error;
    }
  });
}
