/** The site client: documents fetched with bounded retries, and checked as signed by the volume's minisign key. */
import { verifyBytes, type PublicKey } from '@psyops/signing';
import type { PostbootOptions } from '../postboot.js';
import { NodeConfigRejectedError, SiteUnreachableError } from '../errors.js';
import { oneLine, type StepContext } from './context.js';

/** A document of the site with its detached signature, as fetched (and kept, for the last good config). */
export interface SignedDocument {
  json: Buffer;
  signature: string;
}

/** Checks a signed document: signature by `key`, the trusted comment naming this path; returns its JSON. */
export function verifySigned(document: SignedDocument, path: string, key: PublicKey): unknown {
  let trustedComment: string;
  try {
    trustedComment = verifyBytes(document.json, key, document.signature, { source: `${path}.minisig` }).trustedComment;
  } catch (error) {
    throw new NodeConfigRejectedError(`${path}: signature check failed (${oneLine(error)})`);
  }
  // siteapi signs every document with "file:<path>" in the trusted comment: another signed file cannot stand in for this one.
  if (!trustedComment.split('\t').includes(`file:${path}`))
    throw new NodeConfigRejectedError(`${path}: the signature is for another file (${trustedComment.slice(0, 100)})`);
  try {
    return JSON.parse(document.json.toString('utf8'));
  } catch {
    throw new NodeConfigRejectedError(`${path} is not JSON`);
  }
}

/** Fetches from the site with bounded retries and backoff; once the site is found unreachable, later fetches fail at once. */
export class SiteClient {
  private unreachable = false;

  constructor(
    readonly baseUrl: string,
    /** The secret volume's minisign key: every document is checked against it. */
    private readonly key: PublicKey,
    private readonly context: StepContext,
    private readonly options: Required<Pick<PostbootOptions, 'siteAttempts' | 'siteRetryDelayMs' | 'fetchTimeoutMs'>>,
  ) {}

  /** The body, or undefined on 404; throws SiteUnreachableError after the retries. */
  private async get(path: string): Promise<Buffer | undefined> {
    if (this.unreachable) throw new SiteUnreachableError(`site ${this.baseUrl} is unreachable`);
    const url = `${this.baseUrl}/${path}`;
    let delay = this.options.siteRetryDelayMs;
    let lastError = '';
    for (let attempt = 1; attempt <= this.options.siteAttempts; attempt++) {
      try {
        const response = await this.context.system.fetch(url, this.options.fetchTimeoutMs);
        if (response.status === 404) return undefined;
        if (response.status === 200) return response.body;
        lastError = `HTTP ${response.status}`;
        if (response.status < 500) break; // a client error will not go away by asking again
      } catch (error) {
        lastError = oneLine((error as Error & { cause?: unknown }).cause ?? error);
      }
      if (attempt < this.options.siteAttempts) {
        await this.context.log.line(`fetching ${url} failed (${lastError}); attempt ${attempt + 1} of ${this.options.siteAttempts} in ${delay} ms`);
        await this.context.system.sleep(delay);
        delay *= 2;
      }
    }
    this.unreachable = true;
    throw new SiteUnreachableError(`site ${this.baseUrl} is unreachable (${path}: ${lastError}, ${this.options.siteAttempts} attempts)`);
  }

  /**
   * A document and its `.minisig`, verified; undefined when the site does not have it. Throws
   * NodeConfigRejectedError for a missing or bad signature, SiteUnreachableError after the retries.
   */
  async getVerified(path: string): Promise<{ document: SignedDocument; value: unknown } | undefined> {
    const json = await this.get(path);
    if (json === undefined) return undefined;
    const signature = await this.get(`${path}.minisig`);
    if (signature === undefined) throw new NodeConfigRejectedError(`${path} has no signature (${path}.minisig) on the site`);
    const document = { json, signature: signature.toString('utf8') };
    return { document, value: verifySigned(document, path, this.key) };
  }
}
