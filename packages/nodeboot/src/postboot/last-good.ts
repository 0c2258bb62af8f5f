/**
 * The last good signed documents (the node config, the lighthouse list): kept in the state
 * directory as one file each, document and signature together, so one rename replaces both and a
 * power cut leaves the old pair or the new one, never a mix. Their versions are the node's
 * high-water marks: nothing older, and nothing of the same version with other bytes, is accepted.
 */
import type { PublicKey } from '@psyops/signing';
import { NodeConfigRejectedError } from '../errors.js';
import { NODE_PATHS, oneLine, type StepContext } from './context.js';
import { verifySigned, type SignedDocument } from './site.js';

const KEPT_FORMAT = 'psyops-last-good/1';

interface KeptFile {
  format: typeof KEPT_FORMAT;
  /** The document's path on the site: what its signature's trusted comment names. */
  path: string;
  /** The document's bytes as fetched, base64. */
  document: string;
  signature: string;
}

/** Keeps a verified document and its signature as one 0600 file (written to a temporary file, then renamed). */
export async function keepSigned({ system }: StepContext, file: string, path: string, document: SignedDocument): Promise<void> {
  const kept: KeptFile = { format: KEPT_FORMAT, path, document: document.json.toString('base64'), signature: document.signature };
  await system.mkdir(NODE_PATHS.stateDir, 0o700);
  await system.writeFile(file, `${JSON.stringify(kept)}\n`, 0o600);
}

/**
 * A kept document, its signature checked again (expiry aside) and its JSON given to `parse`;
 * undefined when there is none or it does not check out (the log says why).
 */
export async function readKept<T>(
  { system, log }: StepContext,
  file: string,
  path: string,
  key: PublicKey,
  parse: (value: unknown) => T,
): Promise<(T & { document: SignedDocument }) | undefined> {
  const bytes = await system.readFile(file);
  if (!bytes) return undefined;
  try {
    const kept = JSON.parse(bytes.toString('utf8')) as Partial<KeptFile>;
    if (kept.format !== KEPT_FORMAT || kept.path !== path || typeof kept.document !== 'string' || typeof kept.signature !== 'string')
      throw new Error(`not a kept ${path} (format ${String(kept.format)})`);
    const document = { json: Buffer.from(kept.document, 'base64'), signature: kept.signature };
    return { ...parse(verifySigned(document, path, key).value), document };
  } catch (error) {
    await log.line(`ignoring the stored last good ${path}: ${oneLine(error)}`);
    return undefined;
  }
}

/**
 * The replay rule: a fetched document older than the last good one is refused, and so is one of
 * the same version with other bytes (an older build of that version served again, or a site built
 * without raising the version). The same version with the same bytes is the same document.
 */
export function refuseReplay(path: string, fetched: { version: number; json: Buffer }, lastGood: { version: number; json: Buffer } | undefined): void {
  if (!lastGood) return;
  if (fetched.version < lastGood.version)
    throw new NodeConfigRejectedError(`${path}: version ${fetched.version} is older than the last good version ${lastGood.version}`);
  if (fetched.version === lastGood.version && !fetched.json.equals(lastGood.json))
    throw new NodeConfigRejectedError(
      `${path}: version ${fetched.version} again but with other content than the last good one (an older build replayed, or the site was built without raising the version)`,
    );
}
