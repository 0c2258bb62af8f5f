import { createHash, createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Encrypter, armor } from 'age-encryption';
import type { SecretKey } from '@psyops/signing';
import { writeFilesAtomically } from '@psyops/core';
import { SiteInputError } from './errors.js';

/**
 * age encryption is randomized (a fresh ephemeral key per file), which would make every site
 * build differ. The cache remembers the ciphertext of each (recipient, plaintext) pair so an
 * unchanged secret keeps its bytes. Entries are keyed by an HMAC under a key derived from the
 * workspace's minisign secret key, so the cache file reveals nothing about the plaintexts.
 */
export class SecretEncryptor {
  private readonly used = new Map<string, string>();

  private constructor(
    private readonly hmacKey: Buffer,
    private readonly cached: Map<string, string>,
    private readonly cacheFile: string | undefined,
  ) {}

  static async open(signingKey: SecretKey, cacheFile?: string): Promise<SecretEncryptor> {
    const hmacKey = createHash('sha256').update('psyops site secret cache v1\0').update(signingKey.secretKey).digest();
    const cached = new Map<string, string>();
    if (cacheFile !== undefined) {
      let text: string | undefined;
      try {
        text = await readFile(cacheFile, 'utf8');
      } catch {
        text = undefined; // no cache yet (or unreadable): encrypt afresh
      }
      if (text !== undefined) {
        try {
          const entries = JSON.parse(text) as { entries?: Record<string, unknown> };
          for (const [key, value] of Object.entries(entries.entries ?? {})) if (typeof value === 'string') cached.set(key, value);
        } catch {
          throw new SiteInputError(`${cacheFile} (the site's secret cache) is not valid JSON; delete it to encrypt every secret afresh`);
        }
      }
    }
    return new SecretEncryptor(hmacKey, cached, cacheFile);
  }

  /** The armored age ciphertext of `plaintext` for `recipient`, from the cache when known. */
  async encrypt(plaintext: string, recipient: string): Promise<string> {
    const id = createHmac('sha256', this.hmacKey).update(recipient).update('\0').update(plaintext).digest('hex');
    let ciphertext = this.used.get(id) ?? this.cached.get(id);
    if (ciphertext === undefined) {
      const encrypter = new Encrypter();
      encrypter.addRecipient(recipient);
      ciphertext = armor.encode(await encrypter.encrypt(plaintext));
    }
    this.used.set(id, ciphertext);
    return ciphertext;
  }

  /** Writes back only the entries this build used (0600: it is workspace-private, like the secrets' sources). */
  async save(): Promise<void> {
    if (this.cacheFile === undefined) return;
    const entries = Object.fromEntries([...this.used.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    await writeFilesAtomically([{ path: this.cacheFile, data: `${JSON.stringify({ entries }, null, 2)}\n`, mode: 0o600 }]);
  }
}
