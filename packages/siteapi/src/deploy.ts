import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, type ListObjectsV2CommandOutput } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { fileAccessError, PsyopsError } from '@psyops/core';
import { cacheControlOf, contentTypeOf, isPointer } from './content.js';
import { BucketNotFoundError, DeployOptionsError, MissingCredentialsError, S3AccessError, S3OperationError, S3UnreachableError } from './errors.js';

export interface DeployOptions {
  /** The built site. */
  dir: string;
  bucket: string;
  /** Key prefix ("" or "site", "a/b"); objects outside it are never read, written or deleted. */
  prefix?: string;
  /** A custom S3 endpoint (MinIO, s3rver, R2…); path-style addressing is used with it. */
  endpoint?: string;
  region: string;
  /** Remove objects under the prefix that the site no longer has, after every upload succeeded. */
  delete?: boolean;
  /** Compute and return the plan; change nothing. */
  dryRun?: boolean;
  /** Uploads in flight at once (default 8). */
  concurrency?: number;
  /** Files at least this big go up as multipart uploads of this part size (default 16 MiB). */
  partSize?: number;
  /** An S3 client to use instead of one built from the options (its settings are the caller's). */
  client?: S3Client;
  onProgress?: (event: DeployEvent) => void;
}

export type DeployEvent =
  | { type: 'planned'; uploads: number; unchanged: number; deletions: number /** of all the uploads */; bytes: number }
  /** Within a multipart upload (files of at least `partSize`): bytes of `key` sent so far. */
  | { type: 'sending'; key: string; sent: number; size: number }
  | { type: 'uploaded'; key: string; size: number; done: number; total: number }
  | { type: 'deleted'; keys: string[] };

export interface PlannedUpload {
  key: string;
  path: string;
  size: number;
  reason: 'new' | 'changed';
}

export interface DeployResult {
  uploads: PlannedUpload[];
  deletions: string[];
  unchanged: number;
  dryRun: boolean;
  /** S3 requests sent, by operation name (PutObject, ListObjectsV2, UploadPart…). */
  requests: Record<string, number>;
}

const DEFAULT_PART_SIZE = 16 * 1024 * 1024;
const MAX_LIST_PAGES = 100_000;
const DELETE_BATCH = 1000;

interface LocalFile {
  relative: string;
  path: string;
  size: number;
  /** ETags this content has in S3: the MD5 of a single PUT, and the multipart form for big files. */
  etags: string[];
  sha256: string;
}

/**
 * Where S3's ETag is not an MD5 of the content (SSE-KMS buckets, some S3-compatible stores), the
 * deploy remembers in this object, under the prefix, the ETag S3 gave each upload and the sha256
 * of what was uploaded: an object whose ETag is still the remembered one still holds that content.
 */
export const DEPLOY_STATE_KEY = '.psyops-deploy-state.json';

interface DeployState {
  format: 'psyops-deploy-state/1';
  /** By key relative to the prefix. */
  objects: Record<string, { etag: string; sha256: string }>;
}

/** `prefix` as stored in keys: no leading slash, a trailing one unless empty. */
export function normalizePrefix(prefix: string | undefined): string {
  const trimmed = (prefix ?? '').replace(/^\/+|\/+$/g, '');
  if (trimmed === '') return '';
  if (trimmed.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new DeployOptionsError(`prefix "${prefix}" must be a plain path such as "site" or "env/prod"`);
  }
  return `${trimmed}/`;
}

async function walk(root: string, relative = ''): Promise<{ relative: string; path: string }[]> {
  const dir = join(root, relative);
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    throw fileAccessError(error, dir, 'site folder');
  }
  const files = [];
  // Dot files are build leftovers (temporary files), never part of the site.
  for (const entry of entries.filter((e) => !e.name.startsWith('.')).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const rel = relative === '' ? entry.name : `${relative}/${entry.name}`;
    if (entry.isDirectory()) files.push(...(await walk(root, rel)));
    else if (entry.isFile()) files.push({ relative: rel, path: join(root, rel) });
  }
  return files;
}

/** sha256, MD5 of the whole file and, when it is multipart-sized, the S3 multipart ETag (MD5 of the parts' MD5s, "-N"). */
async function checksumsOf(path: string, size: number, partSize: number): Promise<{ sha256: string; etags: string[] }> {
  const whole = createHash('md5');
  const sha256 = createHash('sha256');
  if (size < partSize) {
    const data = await readFile(path);
    return { sha256: sha256.update(data).digest('hex'), etags: [whole.update(data).digest('hex')] };
  }
  const partDigests: Buffer[] = [];
  let part = createHash('md5');
  let inPart = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    whole.update(chunk);
    sha256.update(chunk);
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(chunk.length - offset, partSize - inPart);
      part.update(chunk.subarray(offset, offset + take));
      inPart += take;
      offset += take;
      if (inPart === partSize) {
        partDigests.push(part.digest());
        part = createHash('md5');
        inPart = 0;
      }
    }
  }
  if (inPart > 0) partDigests.push(part.digest());
  const multipart = `${createHash('md5').update(Buffer.concat(partDigests)).digest('hex')}-${partDigests.length}`;
  return { sha256: sha256.digest('hex'), etags: [whole.digest('hex'), multipart] };
}

/** The previous deploy's state; an unreadable or foreign one counts as none (everything is then compared by ETag alone). */
async function readState(client: S3Client, bucket: string, key: string, fail: (error: unknown) => PsyopsError): Promise<DeployState['objects']> {
  let text: string;
  try {
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    text = (await object.Body?.transformToString()) ?? '';
  } catch (error) {
    if ((error as { name?: string }).name === 'NoSuchKey') return {};
    throw fail(error);
  }
  try {
    const state = JSON.parse(text) as Partial<DeployState>;
    if (state.format !== 'psyops-deploy-state/1' || typeof state.objects !== 'object' || state.objects === null) return {};
    return state.objects;
  } catch {
    return {};
  }
}

/** Maps SDK and network failures to one clear psyops error. */
export function s3Error(error: unknown, bucket: string, endpoint: string | undefined): PsyopsError {
  if (error instanceof PsyopsError) return error;
  const err = error as { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const name = err.name ?? '';
  const where = endpoint ? ` at ${endpoint}` : '';
  if (name === 'NoSuchBucket') return new BucketNotFoundError(`bucket "${bucket}" does not exist${where}`);
  if (name === 'CredentialsProviderError' || /Could not load credentials/i.test(err.message ?? '')) {
    return new MissingCredentialsError(
      'no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials (the standard AWS chain)',
    );
  }
  if (['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'Forbidden'].includes(name) || err.$metadata?.httpStatusCode === 403) {
    return new S3AccessError(`access to bucket "${bucket}"${where} denied (${name || 'HTTP 403'}): check the credentials and their permissions`);
  }
  const code = err.code ?? (error as { cause?: { code?: string } }).cause?.code;
  if (code && ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH'].includes(code)) {
    return new S3UnreachableError(`cannot reach S3${where || ` for bucket "${bucket}"`} (${code})`);
  }
  return new S3OperationError(`S3 ${name || 'request'} failed for bucket "${bucket}"${where}: ${(err.message ?? String(error)).split('\n')[0]}`);
}

/** An S3 client for a deploy: path-style for custom endpoints, and checksums only where S3 requires them. */
export function createS3Client(options: { region: string; endpoint?: string | undefined }): S3Client {
  return new S3Client({
    region: options.region,
    ...(options.endpoint !== undefined ? { endpoint: options.endpoint, forcePathStyle: true } : {}),
    // Default CRC32 trailers on streamed bodies are stored wrongly by some S3-compatible servers (s3rver).
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
  });
}

/** Runs `work` over `items` with at most `limit` in flight; stops starting new ones after the first failure. */
async function eachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await work(item);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker));
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected) throw rejected.reason;
}

const SIGNATURE = '.minisig';

/** The document a signature signs (`X` for `X.minisig`); undefined for anything that is not a signature. */
function signedDocumentOf(key: string): string | undefined {
  return key.endsWith(SIGNATURE) && key.length > SIGNATURE.length ? key.slice(0, -SIGNATURE.length) : undefined;
}

/**
 * The uploads as chains that go up in order, each link once the one before it is up: a document
 * and then its signature (when both changed), or a lone file or signature. `regular` chains may run
 * side by side; `pointers` (index.*, latest.*, manifest.*, os/update-*.json, APKINDEX and their signatures) run one
 * after the other once every regular chain is done, index.* last.
 */
function uploadChains(uploads: readonly PlannedUpload[]): { regular: PlannedUpload[][]; pointers: PlannedUpload[][] } {
  const byKey = new Map(uploads.map((u) => [u.key, u]));
  const chains = new Map<string, PlannedUpload[]>();
  for (const item of uploads) {
    const document = signedDocumentOf(item.key);
    // A signature rides behind its document when that goes up too; otherwise (only the timestamp
    // changed, or the document is already there) it goes up on its own.
    if (document !== undefined && byKey.has(document)) continue;
    const signature = byKey.get(`${item.key}${SIGNATURE}`);
    chains.set(item.key, signature && document === undefined ? [item, signature] : [item]);
  }
  const pointerOf = (chain: PlannedUpload[]) => isPointer(signedDocumentOf(chain[0]!.key) ?? chain[0]!.key);
  const isIndex = (chain: PlannedUpload[]) => /(^|\/)index\.[^/]*$/.test(signedDocumentOf(chain[0]!.key) ?? chain[0]!.key);
  const all = [...chains.values()];
  const pointers = all
    .filter(pointerOf)
    .sort((a, b) => Number(isIndex(a)) - Number(isIndex(b)) || (a[0]!.key < b[0]!.key ? -1 : a[0]!.key > b[0]!.key ? 1 : 0));
  return { regular: all.filter((chain) => !pointerOf(chain)), pointers };
}

/**
 * Makes the objects under `prefix` in `bucket` match the site folder: uploads new and changed
 * files (compared by size and ETag from one listing, so a deploy that was interrupted simply
 * continues) and with `delete` removes stale objects under the prefix once every upload succeeded.
 *
 * The order keeps every signed pair (`X` + `X.minisig`) as whole as two S3 objects can be for a
 * node reading mid-deploy: a signature is never there without its document, nor newer than it.
 *
 * 1. Every file that is not a pointer, up to `concurrency` at once; a document whose signature
 *    changed too is followed by that signature at once, by the same upload slot (its bytes read
 *    while the document goes up), so a new document sits beside its old signature only for the
 *    time of one small PUT. A signature whose document did not change (only the timestamp did)
 *    goes up alone: the pair never mixes.
 * 2. Once all of those are up, the pointers (index.*, latest.*, manifest.*, os/update-*.json, APKINDEX), one at a
 *    time, each document before its signature, index.* last: a pointer never names a file that is
 *    not there yet.
 * 3. With `delete`, stale signatures first and only then the other stale objects.
 * 4. The deploy state, for this tool only.
 */
export async function deploySite(options: DeployOptions): Promise<DeployResult> {
  const concurrency = options.concurrency ?? 8;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) {
    throw new DeployOptionsError(`concurrency must be a whole number from 1 to 256, got ${concurrency}`);
  }
  if (!/^[a-z0-9][a-z0-9.-]{1,62}$/.test(options.bucket)) throw new DeployOptionsError(`"${options.bucket}" is not a valid bucket name`);
  const partSize = options.partSize ?? DEFAULT_PART_SIZE;
  const prefix = normalizePrefix(options.prefix);
  const fail = (error: unknown) => s3Error(error, options.bucket, options.endpoint);
  const progress = options.onProgress ?? (() => undefined);

  const info = await stat(options.dir).catch((error: unknown) => Promise.reject(fileAccessError(error, options.dir, 'site folder')));
  if (!info.isDirectory()) throw new DeployOptionsError(`${options.dir} is not a folder (build the site with: psyops site build)`);
  const local: LocalFile[] = [];
  for (const file of await walk(options.dir)) {
    const { size } = await stat(file.path);
    local.push({ ...file, size, ...(await checksumsOf(file.path, size, partSize)) });
  }

  const client = options.client ?? createS3Client(options);
  const requests: Record<string, number> = {};
  const middlewareName = 'psyopsRequestCounter';
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const name = (context.commandName ?? 'unknown').replace(/Command$/, '');
      requests[name] = (requests[name] ?? 0) + 1;
      return next(args);
    },
    { step: 'finalizeRequest', name: middlewareName, override: true },
  );

  try {
    const remote = new Map<string, { size: number; etag: string }>();
    let token: string | undefined;
    for (let page = 0; page < MAX_LIST_PAGES; page++) {
      let listed: ListObjectsV2CommandOutput;
      try {
        listed = await client.send(new ListObjectsV2Command({ Bucket: options.bucket, Prefix: prefix || undefined, ContinuationToken: token }));
      } catch (error) {
        throw fail(error);
      }
      for (const object of listed.Contents ?? []) {
        if (object.Key === undefined || !object.Key.startsWith(prefix)) continue;
        remote.set(object.Key, { size: object.Size ?? -1, etag: (object.ETag ?? '').replace(/"/g, '') });
      }
      token = listed.IsTruncated ? listed.NextContinuationToken : undefined;
      if (!token) break;
    }
    const stateKey = `${prefix}${DEPLOY_STATE_KEY}`;
    const previousState = remote.has(stateKey) ? await readState(client, options.bucket, stateKey, fail) : {};

    const uploads: PlannedUpload[] = [];
    for (const file of local) {
      const key = `${prefix}${file.relative}`;
      const there = remote.get(key);
      const remembered = previousState[file.relative];
      const sameEtag = there !== undefined && (file.etags.includes(there.etag) || (remembered?.etag === there.etag && remembered.sha256 === file.sha256));
      if (there && there.size === file.size && sameEtag) continue;
      uploads.push({ key, path: file.path, size: file.size, reason: there ? 'changed' : 'new' });
    }
    const localKeys = new Set(local.map((f) => `${prefix}${f.relative}`));
    const stale = options.delete ? [...remote.keys()].filter((key) => !localKeys.has(key) && key !== stateKey).sort() : [];
    // Deleted in two steps, so that no signature outlives its document: the signatures, then the rest.
    const deletionSteps = [stale.filter((key) => signedDocumentOf(key) !== undefined), stale.filter((key) => signedDocumentOf(key) === undefined)];
    const deletions = deletionSteps.flat();
    const unchanged = local.length - uploads.length;
    const bytes = uploads.reduce((sum, item) => sum + item.size, 0);
    progress({ type: 'planned', uploads: uploads.length, unchanged, deletions: deletions.length, bytes });
    if (options.dryRun) return { uploads, deletions, unchanged, dryRun: true, requests };

    const uploadedEtags = new Map<string, string>();
    /** Uploads one file; `body`, for a file below `partSize`, is its content read ahead. */
    const upload = async (item: PlannedUpload, body?: Promise<Buffer>) => {
      const headers = { ContentType: contentTypeOf(item.key), CacheControl: cacheControlOf(item.key) };
      try {
        let etag: string | undefined;
        if (item.size < partSize) {
          etag = (await client.send(new PutObjectCommand({ Bucket: options.bucket, Key: item.key, Body: await (body ?? readFile(item.path)), ...headers })))
            .ETag;
        } else {
          const multipart = new Upload({
            client,
            params: { Bucket: options.bucket, Key: item.key, Body: createReadStream(item.path), ...headers },
            partSize,
            queueSize: 2,
            leavePartsOnError: false,
          });
          multipart.on('httpUploadProgress', ({ loaded }) => {
            if (loaded !== undefined && loaded < item.size) progress({ type: 'sending', key: item.key, sent: loaded, size: item.size });
          });
          etag = (await multipart.done()).ETag;
        }
        if (etag !== undefined) uploadedEtags.set(item.key, etag.replace(/"/g, ''));
      } catch (error) {
        throw fail(error);
      }
    };
    let done = 0;
    const report = (item: PlannedUpload) => progress({ type: 'uploaded', key: item.key, size: item.size, done: ++done, total: uploads.length });
    /** A chain goes up link by link; the links after the first are read while the one before goes up. */
    const send = async (chain: PlannedUpload[]) => {
      const ahead = chain.map((item, i) => (i > 0 && item.size < partSize ? readFile(item.path) : undefined));
      for (const body of ahead) body?.catch(() => undefined); // awaited below, or moot once an earlier link failed
      for (const [i, item] of chain.entries()) {
        await upload(item, ahead[i]);
        report(item);
      }
    };
    const { regular, pointers } = uploadChains(uploads);
    await eachLimited(regular, concurrency, send);
    for (const chain of pointers) await send(chain);

    for (const step of deletionSteps) {
      for (let i = 0; i < step.length; i += DELETE_BATCH) {
        const batch = step.slice(i, i + DELETE_BATCH);
        let result;
        try {
          result = await client.send(new DeleteObjectsCommand({ Bucket: options.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }));
        } catch (error) {
          throw fail(error);
        }
        const firstError = result.Errors?.[0];
        if (firstError)
          throw new S3OperationError(`deleting ${firstError.Key ?? 'an object'} failed: ${firstError.Code ?? ''} ${firstError.Message ?? ''}`.trim());
        progress({ type: 'deleted', keys: batch });
      }
    }

    // Remember what each object holds, for stores whose ETags are not MD5s; written only when it changed.
    const state: DeployState = { format: 'psyops-deploy-state/1', objects: {} };
    for (const file of local) {
      const key = `${prefix}${file.relative}`;
      const etag = uploadedEtags.get(key) ?? remote.get(key)?.etag;
      if (etag) state.objects[file.relative] = { etag, sha256: file.sha256 };
    }
    const stateText = `${JSON.stringify(state, null, 1)}\n`;
    if (JSON.stringify(previousState) !== JSON.stringify(state.objects)) {
      try {
        await client.send(
          new PutObjectCommand({ Bucket: options.bucket, Key: stateKey, Body: stateText, ContentType: 'application/json', CacheControl: 'no-store' }),
        );
      } catch (error) {
        throw fail(error);
      }
    }
    return { uploads, deletions, unchanged, dryRun: false, requests };
  } finally {
    client.middlewareStack.remove(middlewareName);
    if (!options.client) client.destroy();
  }
}
