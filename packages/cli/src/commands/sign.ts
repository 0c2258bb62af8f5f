import { Command } from 'commander';
import { formatKeyId, parseSignature, readSecretKeyFile, signFile } from '@psyops/signing';
import { assertReadableFile, writeFilesAtomically } from '@psyops/core';
import { progressReporter, sourceDateEpoch, workspaceKeyPath } from '../context.js';
import { UsageError } from '../errors.js';
import { obtainPassword, type PasswordSources } from '../password.js';
import { addPasswordOptions } from './options.js';

interface SignCommandOptions extends PasswordSources {
  secretKey?: string;
  file: string[];
  signatureFile?: string;
  trustedComment?: string;
  untrustedComment?: string;
  legacy?: boolean;
  json?: boolean;
}

/** What `sign --json` prints (one line) once every signature is written. */
export interface SignReport {
  signatures: { file: string; signatureFile: string; keyId: string; algorithm: 'prehashed' | 'legacy'; trustedComment: string }[];
}

export function signCommand(): Command {
  const command = new Command('sign')
    .summary('sign files (minisign-compatible)')
    .description(
      'Sign one or more files with a minisign secret key. Each signature goes to FILE.minisig (or -x).\n' +
        'Signatures are prehashed (BLAKE2b-512, streamed: any file size) unless -l asks for legacy ones.\n' +
        'Without -s the workspace key is used. Either every signature is written or none is.',
    )
    .option('-s, --secret-key <SECKEY>', 'secret key file (default: the workspace key)')
    .requiredOption('-m, --file <FILE...>', 'file(s) to sign (required)')
    .option('-x, --signature-file <SIGFILE>', 'signature file to write (only when signing one file)')
    .option(
      '-t, --trusted-comment <COMMENT>',
      'trusted (signed) comment; default "timestamp:<time>\\tfile:<name>\\thashed"; the time honours SOURCE_DATE_EPOCH',
    )
    .option('-c, --untrusted-comment <COMMENT>', 'untrusted comment (default "signature from minisign secret key")')
    .option('-l, --legacy', 'legacy signature of the whole file in memory (for minisign < 0.8 and signify-era tools)')
    .option('--json', 'print one JSON object listing the signatures written to stdout (see the README)');
  addPasswordOptions(command);
  return command.action(async (options: SignCommandOptions, cmd: Command) => {
    if (options.signatureFile !== undefined && options.file.length > 1) {
      throw new UsageError(`-x names one signature file, but ${options.file.length} files were given`);
    }
    // Check every input before asking for a password, so a typo costs no prompt.
    const timestamp = sourceDateEpoch();
    for (const file of options.file) await assertReadableFile(file, 'file to sign');
    const keyPath = options.secretKey ?? (await workspaceKeyPath(cmd, 'secretKey'));
    const key = await readSecretKeyFile(keyPath, () => obtainPassword(options, `secret key ${keyPath}`));
    const signatures = [];
    for (const file of options.file) {
      const text = await signFile(file, key, {
        legacy: options.legacy ?? false,
        ...(options.trustedComment !== undefined ? { trustedComment: options.trustedComment } : {}),
        ...(options.untrustedComment !== undefined ? { untrustedComment: options.untrustedComment } : {}),
        ...(timestamp !== undefined ? { timestamp } : {}),
        onProgress: progressReporter(`signing ${file}`),
      });
      signatures.push({ path: options.signatureFile ?? `${file}.minisig`, data: text });
    }
    await writeFilesAtomically(signatures);
    if (options.json) {
      const report: SignReport = {
        signatures: signatures.map(({ path, data }, index) => {
          const parsed = parseSignature(data);
          const file = options.file[index]!;
          return { file, signatureFile: path, keyId: formatKeyId(parsed.keyId), algorithm: parsed.algorithm, trustedComment: parsed.trustedComment };
        }),
      };
      process.stdout.write(`${JSON.stringify(report)}\n`);
    }
  });
}
