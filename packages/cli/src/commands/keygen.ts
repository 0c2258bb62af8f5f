import { existsSync } from 'node:fs';
import { Command } from 'commander';
import { encodePublicKey, encodePublicKeyBase64, encodeSecretKey, formatKeyId, generateKeyPair, publicKeyOf } from '@psyops/signing';
import { FileAccessError, writeFilesAtomically } from '@psyops/core';
import { obtainPassword, type PasswordSources } from '../password.js';
import { addPasswordOptions } from './options.js';

interface KeygenOptions extends PasswordSources {
  publicKey: string;
  secretKey: string;
  password: boolean;
  force?: boolean;
  comment?: string;
  json?: boolean;
}

/** What `keygen --json` prints (one line) once the key pair is written. */
export interface KeygenReport {
  publicKey: string;
  secretKey: string;
  keyId: string;
  publicKeyBase64: string;
  encrypted: boolean;
}

/** Writes a new key pair; shared by `keygen` and `init`. */
export async function writeNewKeyPair(options: {
  publicKeyPath: string;
  secretKeyPath: string;
  password: string | null;
  comment?: string;
}): Promise<{ keyId: string; publicKeyBase64: string }> {
  const key = generateKeyPair();
  const secretText = await encodeSecretKey(key, {
    password: options.password,
    ...(options.comment ? { comment: options.comment } : {}),
  });
  const pub = publicKeyOf(key);
  await writeFilesAtomically([
    { path: options.secretKeyPath, data: secretText, mode: 0o600 },
    { path: options.publicKeyPath, data: encodePublicKey(pub), mode: 0o644 },
  ]);
  return { keyId: formatKeyId(key.keyId), publicKeyBase64: encodePublicKeyBase64(pub) };
}

export function keygenCommand(): Command {
  const command = new Command('keygen')
    .summary('create a minisign key pair')
    .description(
      'Create a minisign-compatible key pair. The secret key is written 0600 and encrypted with a password ' +
        '(scrypt, exactly as minisign does) unless -W is given. Existing keys are never overwritten without -f.',
    )
    .requiredOption('-p, --public-key <PUBKEY>', 'public key file to write (required)')
    .requiredOption('-s, --secret-key <SECKEY>', 'secret key file to write, mode 0600 (required)')
    .option('-W, --no-password', 'do not encrypt the secret key')
    .option('-c, --comment <COMMENT>', 'untrusted comment on the secret key file')
    .option('-f, --force', 'overwrite existing key files')
    .option('--json', 'print one JSON object about the new key pair to stdout, and the human text to stderr (see the README)');
  addPasswordOptions(command);
  return command.action(async (options: KeygenOptions) => {
    if (!options.force) {
      for (const path of [options.secretKey, options.publicKey]) {
        if (existsSync(path)) throw new FileAccessError(`${path} already exists; add -f to overwrite the key pair`, 'FILE_EXISTS', path);
      }
    }
    const password = options.password ? await obtainPassword(options, `new secret key ${options.secretKey}`, true) : null;
    const { keyId, publicKeyBase64 } = await writeNewKeyPair({
      publicKeyPath: options.publicKey,
      secretKeyPath: options.secretKey,
      password,
      ...(options.comment ? { comment: options.comment } : {}),
    });
    const report: KeygenReport = {
      publicKey: options.publicKey,
      secretKey: options.secretKey,
      keyId,
      publicKeyBase64,
      encrypted: password !== null,
    };
    if (options.json) process.stdout.write(`${JSON.stringify(report)}\n`);
    (options.json ? process.stderr : process.stdout).write(
      `secret key: ${options.secretKey} (${password === null ? 'not encrypted' : 'encrypted'}, keep it secret)\n` +
        `public key: ${options.publicKey} (key id ${keyId})\n` +
        `verify with: psyops verify -p ${options.publicKey} -m FILE   or   minisign -Vm FILE -P ${publicKeyBase64}\n`,
    );
  });
}
