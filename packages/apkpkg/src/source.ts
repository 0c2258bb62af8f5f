/** Reading a package or index from a file path or an HTTP(S) URL. */
import { readFile } from 'node:fs/promises';
import { fileAccessError } from '@psyops/core';
import { ApkFetchError } from './errors.js';

export interface FetchSourceOptions {
  /** Milliseconds before the download is abandoned (default 60 s). */
  timeoutMs?: number;
  /** Largest accepted body (default 2 GiB). */
  maxBytes?: number;
}

export function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

/** The bytes of a local file or an http(s) URL; failures are typed (FILE_NOT_FOUND, APK_FETCH_FAILED). */
export async function readSource(source: string, options: FetchSourceOptions = {}): Promise<Buffer> {
  const maxBytes = options.maxBytes ?? 2 ** 31;
  if (!isUrl(source)) {
    try {
      return await readFile(source);
    } catch (error) {
      throw fileAccessError(error, source, 'file');
    }
  }
  let response: Response;
  try {
    response = await fetch(source, { signal: AbortSignal.timeout(options.timeoutMs ?? 60_000), redirect: 'follow' });
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    throw new ApkFetchError(`cannot fetch ${source}: ${cause?.code ?? cause?.message ?? (error as Error).message}`);
  }
  if (!response.ok) throw new ApkFetchError(`cannot fetch ${source}: HTTP ${response.status}`);
  const length = Number(response.headers.get('content-length') ?? 0);
  if (length > maxBytes) throw new ApkFetchError(`${source} is larger than ${maxBytes} bytes`);
  const body = Buffer.from(await response.arrayBuffer());
  if (body.length > maxBytes) throw new ApkFetchError(`${source} is larger than ${maxBytes} bytes`);
  return body;
}
