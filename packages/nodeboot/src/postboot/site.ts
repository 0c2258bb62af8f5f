/** The site client: documents fetched with bounded retries, and checked as signed by the volume's minisign key. */
import { verifyBytes, type PublicKey } from '@psyops/signing';
import type { PostbootOptions } from '../postboot.js';
import { FetchLimitError, NodeConfigRejectedError, SiteUnreachableError } from '../errors.js';
import { oneLine, type StepContext } from './context.js';

/**
 * The most bytes of a site document (a node config, a signature, the lighthouse list): a config
 * with a few files is kilobytes; a larger answer is a hostile or broken server, not a config.
 */
export const SITE_DOCUMENT_MAX_BYTES = 1024 * 1024;

/** A document of the site with its detached signature, as fetched (and kept, for the last good config). */
export interface SignedDocument {
  json: Buffer;
  signature: string;
}

/** A signature that does not match its document: tampered with, or caught mid-deploy (document and signature from two builds). */
export class SignatureMismatchError extends NodeConfigRejectedError {}

/** A document as checked: its JSON, and when its signature stops being valid (`expires:` in the trusted comment). */
export interface VerifiedValue {
  value: unknown;
  /** Unix seconds; absent: the signature does not expire. */
  expiresAt?: number;
}

/**
 * Checks a signed document: signature by `key`, the trusted comment naming this path and, when
 * `now` (ms) is given, not expired; returns its JSON. The last good document is checked without
 * `now`: it was fresh when it was accepted, and stays the fallback.
 */
export function verifySigned(document: SignedDocument, path: string, key: PublicKey, now?: number): VerifiedValue {
  let trustedComment: string;
  try {
    trustedComment = verifyBytes(document.json, key, document.signature, { source: `${path}.minisig` }).trustedComment;
  } catch (error) {
    throw new SignatureMismatchError(`${path}: signature check failed (${oneLine(error)})`);
  }
  // siteapi signs every document with "file:<path>" in the trusted comment: another signed file cannot stand in for this one.
  const fields = trustedComment.split('\t');
  if (!fields.includes(`file:${path}`)) throw new NodeConfigRejectedError(`${path}: the signature is for another file (${trustedComment.slice(0, 100)})`);
  const expires = fields.find((field) => field.startsWith('expires:'));
  const expiresAt = expires === undefined ? undefined : Number(expires.slice('expires:'.length));
  if (expiresAt !== undefined && !Number.isSafeInteger(expiresAt))
    throw new NodeConfigRejectedError(`${path}: the signature's expiry is not a Unix time (${expires})`);
  if (expiresAt !== undefined && now !== undefined && now >= expiresAt * 1000)
    throw new NodeConfigRejectedError(`${path}: its signature expired at ${new Date(expiresAt * 1000).toISOString()} (site build --valid-for)`);
  try {
    return { value: JSON.parse(document.json.toString('utf8')), ...(expiresAt !== undefined ? { expiresAt } : {}) };
  } catch {
    throw new NodeConfigRejectedError(`${path} is not JSON`);
  }
}

/** Fetches from the site with bounded retries and backoff; once the site is found unreachable, later fetches fail at once. */
export class SiteClient {
  /** Why the site was found unreachable: later fetches fail at once with the same reason (the status names it). */
  private unreachable: string | undefined;

  constructor(
    readonly baseUrl: string,
    /** The secret volume's minisign key: every document is checked against it. */
    private readonly key: PublicKey,
    private readonly context: StepContext,
    private readonly options: Required<Pick<PostbootOptions, 'siteAttempts' | 'siteRetryDelayMs' | 'fetchTimeoutMs'>>,
  ) {}

  /** The body, or undefined on 404; throws SiteUnreachableError after the retries. */
  private async get(path: string): Promise<Buffer | undefined> {
    if (this.unreachable !== undefined) throw new SiteUnreachableError(this.unreachable);
    const url = `${this.baseUrl}/${path}`;
    let delay = this.options.siteRetryDelayMs;
    let lastError = '';
    let attempt = 1;
    for (; attempt <= this.options.siteAttempts; attempt++) {
      try {
        const response = await this.context.system.fetch(url, { deadlineMs: this.options.fetchTimeoutMs, maxBytes: SITE_DOCUMENT_MAX_BYTES });
        if (response.status === 404) return undefined;
        if (response.status === 200) return response.body;
        lastError = `HTTP ${response.status}`;
        if (response.status < 500) break; // a client error will not go away by asking again
      } catch (error) {
        lastError = oneLine((error as Error & { cause?: unknown }).cause ?? error);
        // An oversized body or a refused redirect comes back the same; a missed deadline may be a slow moment.
        if (error instanceof FetchLimitError && error.limit !== 'deadline') break;
      }
      if (attempt < this.options.siteAttempts) {
        await this.context.log.line(`fetching ${url} failed (${lastError}); attempt ${attempt + 1} of ${this.options.siteAttempts} in ${delay} ms`);
        await this.context.system.sleep(delay);
        delay *= 2;
      }
    }
    const attempts = Math.min(attempt, this.options.siteAttempts);
    this.unreachable = `site ${this.baseUrl} is unreachable (${path}: ${lastError}, ${attempts} attempt${attempts === 1 ? '' : 's'})`;
    throw new SiteUnreachableError(this.unreachable);
  }

  /**
   * A document and its `.minisig`, verified and not expired; undefined when the site does not have
   * it. A pair whose signature does not match is fetched once more: a deploy uploads the document,
   * then its signature, and a node may catch the moment between. Throws NodeConfigRejectedError for
   * a missing, bad or expired signature, SiteUnreachableError after the retries.
   */
  async getVerified(path: string): Promise<({ document: SignedDocument } & VerifiedValue) | undefined> {
    for (let attempt = 1; ; attempt++) {
      const json = await this.get(path);
      if (json === undefined) return undefined;
      const signature = await this.get(`${path}.minisig`);
      if (signature === undefined) throw new NodeConfigRejectedError(`${path} has no signature (${path}.minisig) on the site`);
      const document = { json, signature: signature.toString('utf8') };
      try {
        return { document, ...verifySigned(document, path, this.key, this.context.system.now()) };
      } catch (error) {
        if (!(error instanceof SignatureMismatchError) || attempt === 2) throw error;
        await this.context.log.line(
          `${path}: the signature does not match (a deploy under way?); fetching the pair again in ${this.options.siteRetryDelayMs} ms`,
        );
        await this.context.system.sleep(this.options.siteRetryDelayMs);
      }
    }
  }
}
