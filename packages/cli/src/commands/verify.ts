import { Command, Option } from 'commander';
import { decodePublicKeyBase64, formatKeyId, readPublicKeyFile, readSignatureFile, verifyFile } from '@psyops/signing';
import { assertReadableFile } from '@psyops/core';
import { progressReporter, workspaceKeyPath } from '../context.js';
import { UsageError } from '../errors.js';

interface VerifyCommandOptions {
  publicKey?: string;
  publicKeyString?: string;
  file: string;
  signatureFile?: string;
  quiet?: boolean;
  commentOnly?: boolean;
  requirePrehashed?: boolean;
  json?: boolean;
}

/** What `verify --json` prints (one line) when the signature is valid. */
export interface VerifyReport {
  file: string;
  signatureFile: string;
  keyId: string;
  algorithm: 'prehashed' | 'legacy';
  trustedComment: string;
  untrustedComment: string;
}

export function verifyCommand(): Command {
  return new Command('verify')
    .summary('verify a file against its minisign signature')
    .description(
      'Verify FILE against its signature (FILE.minisig or -x): the key id, the signature over the file and ' +
        'the signature over the trusted comment. Prints the trusted comment and exits 0 when all hold; ' +
        'otherwise prints one line saying what failed and exits 1. Without -p/-P the workspace key is used.',
    )
    .option('-p, --public-key <PUBKEY>', 'public key file (default: the workspace key)')
    .option('-P, --public-key-string <BASE64>', 'public key given inline, as minisign -P')
    .requiredOption('-m, --file <FILE>', 'file to verify (required)')
    .option('-x, --signature-file <SIGFILE>', 'signature file (default: FILE.minisig)')
    .option('-q, --quiet', 'print nothing when the signature is valid')
    .option('-Q, --comment-only', 'print only the trusted comment when the signature is valid')
    .option('-H, --require-prehashed', 'refuse legacy (non-prehashed) signatures')
    .addOption(new Option('--json', 'print one JSON object about the valid signature to stdout (see the README)').conflicts(['quiet', 'commentOnly']))
    .action(async (options: VerifyCommandOptions, cmd: Command) => {
      if (options.publicKey !== undefined && options.publicKeyString !== undefined) {
        throw new UsageError('give the public key either as a file (-p) or inline (-P), not both');
      }
      // The file first: a missing FILE is named as such, not as its missing FILE.minisig.
      await assertReadableFile(options.file, 'signed file');
      const publicKey =
        options.publicKeyString !== undefined
          ? decodePublicKeyBase64(options.publicKeyString, 'the -P public key')
          : await readPublicKeyFile(options.publicKey ?? (await workspaceKeyPath(cmd, 'publicKey')));
      const signaturePath = options.signatureFile ?? `${options.file}.minisig`;
      const signature = await readSignatureFile(signaturePath);
      const result = await verifyFile(options.file, publicKey, signature, {
        source: signaturePath,
        requirePrehashed: options.requirePrehashed ?? false,
        onProgress: progressReporter(`verifying ${options.file}`),
      });
      if (options.json) {
        const report: VerifyReport = {
          file: options.file,
          signatureFile: signaturePath,
          keyId: formatKeyId(result.keyId),
          algorithm: result.algorithm,
          trustedComment: result.trustedComment,
          untrustedComment: result.untrustedComment,
        };
        process.stdout.write(`${JSON.stringify(report)}\n`);
        return;
      }
      if (options.quiet) return;
      if (options.commentOnly) process.stdout.write(`${result.trustedComment}\n`);
      else process.stdout.write(`Signature and comment signature verified\nTrusted comment: ${result.trustedComment}\n`);
    });
}
