import { mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { DeleteObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deploySite, normalizePrefix, type DeployOptions } from '../src/index.ts';
import { DEPLOY_STATE_KEY, createS3Client } from '../src/deploy.ts';
import { S3_ENV, startS3, tempDir, type S3Server } from './fixtures.ts';

const dir = tempDir('deploy');
const site = join(dir, 'site');
let s3: S3Server;
let client: S3Client;
const MiB = 1024 * 1024;

function write(path: string, data: string | Buffer) {
  mkdirSync(join(site, path, '..'), { recursive: true });
  writeFileSync(join(site, path), data);
}

/** key → ETag of every object in a bucket. */
async function bucketState(bucket: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  let token: string | undefined;
  for (let i = 0; i < 100; i++) {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    for (const o of page.Contents ?? []) out[o.Key!] = o.ETag!;
    token = page.NextContinuationToken;
    if (!token) break;
  }
  return out;
}

const deploy = (options: Partial<DeployOptions> = {}) =>
  deploySite({ dir: site, bucket: 'site', prefix: 'live', endpoint: s3.endpoint, region: 'us-east-1', concurrency: 4, partSize: 5 * MiB, ...options });

beforeAll(async () => {
  Object.assign(process.env, S3_ENV, { AWS_EC2_METADATA_DISABLED: 'true' });
  s3 = await startS3(['site', 'other', 'scratch']);
  client = createS3Client({ region: 'us-east-1', endpoint: s3.endpoint });
  write('index.html', '<html></html>\n');
  write('error.html', '<html>404</html>\n');
  write('index.json', '{"documents":[]}\n');
  write('index.json.minisig', 'sig of index\n');
  write('os/latest.json', '{"filename":"psyopsOS-1-x86_64.iso"}\n');
  write('os/latest.json.minisig', 'sig of latest\n');
  write('os/psyopsOS-1-x86_64.iso', Buffer.alloc(6 * MiB + 123, 9)); // multipart at 5 MiB parts
  write('os/psyopsOS-1-x86_64.iso.minisig', 'sig of iso\n');
  write('apk/psyopsOS/x86_64/APKINDEX.tar.gz', 'index');
  write('apk/psyopsOS/x86_64/a-1.0-r0.apk', 'package');
  for (let i = 0; i < 20; i++) write(`nodes/node-${i}.json`, `{"n":${i}}\n`);
  write('.site.build-leftover.tmp', 'never uploaded');
});

afterAll(async () => {
  client?.destroy();
  await s3?.close();
});

describe('deploySite against a real S3 server (s3rver)', () => {
  it('first deploy uploads every file (not dot files), pointers last, with types and cache headers', async () => {
    const result = await deploy();
    // The server reports stored objects on a pipe: wait (bounded) until the last one has arrived.
    for (let i = 0; i < 100 && !s3.created.includes(`live/${DEPLOY_STATE_KEY}`); i++) await new Promise((r) => setTimeout(r, 50));
    const order = s3.created.filter((key) => key.startsWith('live/'));
    expect(result.uploads).toHaveLength(30);
    expect(result.uploads.every((u) => u.reason === 'new')).toBe(true);
    const state = await bucketState('site');
    expect(Object.keys(state).sort()).toEqual([...result.uploads.map((u) => u.key), `live/${DEPLOY_STATE_KEY}`].sort());
    expect(Object.keys(state).every((k) => k.startsWith('live/'))).toBe(true);
    expect(state['live/.site.build-leftover.tmp']).toBeUndefined();

    // Every pointer comes after every other object; signatures before their documents; index.json last.
    const pointers = [
      'live/apk/psyopsOS/x86_64/APKINDEX.tar.gz',
      'live/index.html',
      'live/index.json',
      'live/index.json.minisig',
      'live/os/latest.json',
      'live/os/latest.json.minisig',
    ];
    const firstPointer = Math.min(...pointers.map((p) => order.indexOf(p)));
    expect(firstPointer).toBe(order.length - pointers.length - 1);
    expect(order.indexOf('live/os/latest.json.minisig')).toBeLessThan(order.indexOf('live/os/latest.json'));
    expect(order.slice(-2)).toEqual(['live/index.json', `live/${DEPLOY_STATE_KEY}`]); // the state is not for clients

    const head = (Key: string) => client.send(new HeadObjectCommand({ Bucket: 'site', Key }));
    expect(await head('live/index.json')).toMatchObject({ ContentType: 'application/json', CacheControl: 'public, max-age=60' });
    expect(await head('live/os/psyopsOS-1-x86_64.iso')).toMatchObject({
      ContentType: 'application/x-iso9660-image',
      CacheControl: 'public, max-age=31536000, immutable',
      ContentLength: 6 * MiB + 123,
    });
    expect(await head('live/index.html')).toMatchObject({ ContentType: 'text/html; charset=utf-8' });
    expect(await head('live/apk/psyopsOS/x86_64/APKINDEX.tar.gz')).toMatchObject({ ContentType: 'application/gzip', CacheControl: 'public, max-age=60' });
    expect(await head('live/os/latest.json.minisig')).toMatchObject({ ContentType: 'text/plain; charset=utf-8' });
  });

  it('a second deploy uploads nothing: one list request and one read of the deploy state', async () => {
    const result = await deploy();
    expect(result.uploads).toEqual([]);
    expect(result.unchanged).toBe(30);
    expect(result.requests).toEqual({ ListObjectsV2: 1, GetObject: 1 });
  });

  it('one changed file uploads exactly that file', async () => {
    write('nodes/node-3.json', '{"n":3,"changed":true}\n');
    const result = await deploy();
    expect(result.uploads.map((u) => [u.key, u.reason])).toEqual([['live/nodes/node-3.json', 'changed']]);
    expect(result.requests.PutObject).toBe(2); // the file, then the deploy state
  });

  it('a changed big file goes up again as a multipart upload', async () => {
    write('os/psyopsOS-1-x86_64.iso', Buffer.alloc(6 * MiB + 123, 8));
    const result = await deploy();
    expect(result.uploads.map((u) => u.key)).toEqual(['live/os/psyopsOS-1-x86_64.iso']);
    expect(result.requests.UploadPart).toBe(2);
    expect((await deploy()).uploads).toEqual([]);
  });

  it('--dry-run returns the plan and changes nothing', async () => {
    write('nodes/new-node.json', '{}\n');
    rmSync(join(site, 'nodes/node-19.json'));
    const before = await bucketState('site');
    const result = await deploy({ dryRun: true, delete: true });
    expect(result.dryRun).toBe(true);
    expect(result.uploads.map((u) => [u.key, u.reason])).toEqual([['live/nodes/new-node.json', 'new']]);
    expect(result.deletions).toEqual(['live/nodes/node-19.json']);
    expect(Object.keys(result.requests).sort()).toEqual(['GetObject', 'ListObjectsV2']);
    expect(await bucketState('site')).toEqual(before);
  });

  it('without --delete stale objects stay; with --delete exactly the stale keys under the prefix go', async () => {
    const put = (Bucket: string, Key: string) => client.send(new PutObjectCommand({ Bucket, Key, Body: 'x' }));
    await put('site', 'live/stale/old.json');
    await put('site', 'livestream/keep.txt'); // shares the prefix's letters, not the folder
    await put('site', 'elsewhere/keep.txt');
    await put('site', 'top.txt');
    await put('other', 'live/keep.txt');
    const kept = await deploy();
    expect(kept.deletions).toEqual([]);
    expect((await bucketState('site'))['live/stale/old.json']).toBeDefined();

    const before = await bucketState('site');
    const result = await deploy({ delete: true });
    expect(result.deletions).toEqual(['live/nodes/node-19.json', 'live/stale/old.json']);
    const after = await bucketState('site');
    const expected = { ...before };
    delete expected['live/nodes/node-19.json'];
    delete expected['live/stale/old.json'];
    expect(after).toEqual(expected);
    expect(Object.keys(await bucketState('other'))).toEqual(['live/keep.txt']);
  });

  it('where ETags are not MD5s (SSE-KMS), the deploy state still finds unchanged files', async () => {
    // s3rver's ETags are always MD5s; this client sees them as SSE-KMS buckets show them: opaque.
    const kms = createS3Client({ region: 'us-east-1', endpoint: s3.endpoint });
    const opaque = (etag: string) => `"${createHash('sha1').update(`kms:${etag}`).digest('hex')}"`;
    kms.middlewareStack.add(
      (next) => async (args) => {
        const result = await next(args);
        const output = result.output as { Contents?: { ETag?: string }[]; ETag?: string };
        for (const object of output.Contents ?? []) if (object.ETag) object.ETag = opaque(object.ETag);
        if (output.ETag) output.ETag = opaque(output.ETag);
        return result;
      },
      { step: 'initialize', name: 'opaqueEtags' },
    );
    try {
      const first = await deploy({ client: kms, prefix: 'kms' });
      expect(first.uploads).toHaveLength(30);
      expect((await deploy({ client: kms, prefix: 'kms' })).uploads).toEqual([]);
      write('nodes/node-4.json', '{"n":4,"changed":true}\n');
      expect((await deploy({ client: kms, prefix: 'kms' })).uploads.map((u) => u.key)).toEqual(['kms/nodes/node-4.json']);
      // Without the state, every object would have to go up again.
      await client.send(new DeleteObjectCommand({ Bucket: 'site', Key: `kms/${DEPLOY_STATE_KEY}` }));
      expect((await deploy({ client: kms, prefix: 'kms', dryRun: true })).uploads).toHaveLength(30);
    } finally {
      kms.destroy();
    }
  });

  it('pages through listings of more than 1,000 objects', async () => {
    const many = join(dir, 'many');
    for (let i = 0; i < 1050; i++) {
      mkdirSync(join(many, String(i % 10)), { recursive: true });
      writeFileSync(join(many, String(i % 10), `${i}.json`), `${i}\n`);
    }
    const options = { dir: many, bucket: 'scratch', prefix: 'many', concurrency: 16 };
    expect((await deploy(options)).uploads).toHaveLength(1050);
    const again = await deploy(options);
    expect(again.uploads).toEqual([]);
    expect(again.requests.ListObjectsV2).toBe(2);
    rmSync(join(many, '7', '1047.json'));
    const pruned = await deploy({ ...options, delete: true });
    expect(pruned.deletions).toEqual(['many/7/1047.json']);
  });

  it('deploys at the bucket root when there is no prefix', async () => {
    const result = await deploy({ bucket: 'scratch', prefix: '' });
    expect(result.uploads.map((u) => u.key)).toContain('index.json');
  });

  it('names a missing bucket, refused credentials and an unreachable endpoint in one typed error', async () => {
    await expect(deploy({ bucket: 'no-such-bucket' })).rejects.toMatchObject({
      code: 'BUCKET_NOT_FOUND',
      message: `bucket "no-such-bucket" does not exist at ${s3.endpoint}`,
    });
    const saved = process.env.AWS_ACCESS_KEY_ID;
    process.env.AWS_ACCESS_KEY_ID = 'WRONG';
    try {
      await expect(deploy()).rejects.toMatchObject({ code: 'BUCKET_ACCESS_DENIED' });
    } finally {
      process.env.AWS_ACCESS_KEY_ID = saved;
    }
    await expect(deploy({ endpoint: 'http://127.0.0.1:9' })).rejects.toMatchObject({ code: 'STORAGE_UNREACHABLE' });
    await expect(deploy({ dir: join(dir, 'missing') })).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
    await expect(deploy({ concurrency: 0 })).rejects.toMatchObject({ code: 'BAD_DEPLOY_OPTIONS' });
    await expect(deploy({ bucket: 'Bad_Bucket' })).rejects.toMatchObject({ code: 'BAD_DEPLOY_OPTIONS' });
  });

  it('normalizes prefixes and refuses ones that could escape', () => {
    expect(normalizePrefix('/site/')).toBe('site/');
    expect(normalizePrefix('a/b')).toBe('a/b/');
    expect(normalizePrefix('')).toBe('');
    expect(() => normalizePrefix('a/../b')).toThrow(/plain path/);
    expect(() => normalizePrefix('a//b')).toThrow(/plain path/);
  });
});
