import { mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
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

    // Every pointer comes after every other object; documents before their signatures; index.json last.
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
    expect(order.indexOf('live/os/latest.json')).toBeLessThan(order.indexOf('live/os/latest.json.minisig'));
    expect(order.indexOf('live/os/psyopsOS-1-x86_64.iso')).toBeLessThan(order.indexOf('live/os/psyopsOS-1-x86_64.iso.minisig'));
    expect(order.slice(-3)).toEqual(['live/index.json', 'live/index.json.minisig', `live/${DEPLOY_STATE_KEY}`]); // the state is not for clients

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

describe('a deploy observed mid-way (s3rver): no signature without its document, none newer than it', () => {
  const mid = join(dir, 'midway');
  const PART = 5 * MiB;
  /** What each version of each file the test wrote is, by relative path and the ETag S3 gives it. */
  const known = new Map<string, { version: number; sha256?: string; signs?: string }>();
  const md5 = (data: Buffer) => createHash('md5').update(data).digest();
  /** The ETags S3 may list for `data`: its MD5 (s3rver lists that even for multipart objects), and the multipart form S3 gives PART-sized parts. */
  const etagsOf = (data: Buffer) => {
    const parts: Buffer[] = [];
    for (let at = 0; at < data.length; at += PART) parts.push(md5(data.subarray(at, at + PART)));
    return [md5(data).toString('hex'), `${md5(Buffer.concat(parts)).toString('hex')}-${parts.length}`];
  };
  const remember = (relative: string, data: Buffer, info: { version: number; sha256?: string; signs?: string }) => {
    for (const etag of etagsOf(data)) if (!known.has(`${relative} ${etag}`)) known.set(`${relative} ${etag}`, info); // the version a content first appeared in
  };
  const put = (relative: string, data: string | Buffer, version: number) => {
    const bytes = Buffer.from(data);
    mkdirSync(join(mid, relative, '..'), { recursive: true });
    writeFileSync(join(mid, relative), bytes);
    remember(relative, bytes, { version, sha256: createHash('sha256').update(bytes).digest('hex') });
    return bytes;
  };
  /** A document and a stand-in signature naming the sha256 it signs and the version (timestamp) it was made at. */
  const signed = (relative: string, data: string | Buffer, version: number) => {
    const sha256 = createHash('sha256')
      .update(put(relative, data, version))
      .digest('hex');
    const signature = Buffer.from(`signs sha256:${sha256} at version ${version}\n`);
    mkdirSync(join(mid, relative, '..'), { recursive: true });
    writeFileSync(join(mid, `${relative}.minisig`), signature);
    remember(`${relative}.minisig`, signature, { version, signs: sha256 });
  };
  const remove = (relative: string) => rmSync(join(mid, relative));

  interface Observation {
    /** Every S3 write, in the order the client began ("start") and finished ("end") it. */
    log: { event: 'start' | 'end'; command: string; keys: string[] }[];
    problems: string[];
    /** After each finished write, the documents that were newer than their signatures. */
    mismatched: { after: string[]; documents: string[] }[];
  }

  /**
   * A deploy whose client, each time a PutObject, multipart upload or DeleteObjects finishes (and
   * before deploySite goes on), lists the bucket as a node would see it and checks every pair.
   */
  async function observedDeploy(concurrency: number, extra: Partial<DeployOptions> = {}) {
    const seen: Observation = { log: [], problems: [], mismatched: [] };
    const observed = createS3Client({ region: 'us-east-1', endpoint: s3.endpoint });
    const writing = new Set<string>();
    const inspect = async (after: string[]) => {
      const there = new Map<string, string>();
      let token: string | undefined;
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: 'site', Prefix: 'midway/', ContinuationToken: token }));
        for (const o of page.Contents ?? []) there.set(o.Key!.slice('midway/'.length), o.ETag!.replace(/"/g, ''));
        token = page.NextContinuationToken;
      } while (token);
      const documents: string[] = [];
      for (const [key, etag] of there) {
        if (key === DEPLOY_STATE_KEY) continue;
        // s3rver, unlike S3, lists an object being written with what it has of it so far.
        if (!known.has(`${key} ${etag}`) && !writing.has(key)) seen.problems.push(`after ${after.join(',')}: ${key} holds content the test never wrote`);
        if (!key.endsWith('.minisig')) continue;
        const document = key.slice(0, -'.minisig'.length);
        const documentEtag = there.get(document);
        if (documentEtag === undefined) {
          seen.problems.push(`after ${after.join(',')}: ${key} is there without ${document}`);
          continue;
        }
        const signature = known.get(`${key} ${etag}`);
        const doc = known.get(`${document} ${documentEtag}`);
        if (!signature || !doc || signature.signs === doc.sha256) continue;
        if (signature.version > doc.version)
          seen.problems.push(`after ${after.join(',')}: ${key} (version ${signature.version}) is newer than ${document} (version ${doc.version})`);
        else documents.push(document);
      }
      seen.mismatched.push({ after, documents: documents.sort() });
    };
    observed.middlewareStack.add(
      (next, context) => async (args) => {
        const command = (context.commandName ?? '').replace(/Command$/, '');
        const input = args.input as { Key?: string; Delete?: { Objects?: { Key?: string }[] } };
        const starts = ['PutObject', 'CreateMultipartUpload', 'DeleteObjects'].includes(command);
        const ends = ['PutObject', 'CompleteMultipartUpload', 'DeleteObjects'].includes(command);
        if (!starts && !ends) return next(args);
        const keys = (command === 'DeleteObjects' ? (input.Delete?.Objects ?? []).map((o) => o.Key!) : [input.Key!]).map((k) => k.replace(/^midway\//, ''));
        if (starts) seen.log.push({ event: 'start', command, keys });
        if (command !== 'DeleteObjects') for (const key of keys) writing.add(key);
        const result = await next(args);
        if (ends) {
          for (const key of keys) writing.delete(key);
          seen.log.push({ event: 'end', command, keys });
          await inspect(keys);
        }
        return result;
      },
      { step: 'initialize', name: 'midwayObserver' },
    );
    try {
      const result = await deploy({ dir: mid, prefix: 'midway', client: observed, concurrency, ...extra });
      return { result, ...seen };
    } finally {
      observed.destroy();
    }
  }

  /** Checks the order of the writes in `log`: documents before their signatures, pointers after everything else, one at a time. */
  function checkOrder(log: Observation['log']) {
    const puts = log.filter((e) => e.command !== 'DeleteObjects' && e.keys[0] !== DEPLOY_STATE_KEY);
    const at = (event: 'start' | 'end', key: string) => puts.findIndex((e) => e.event === event && e.keys[0] === key);
    const keys = [...new Set(puts.map((e) => e.keys[0]!))];
    const isPointerKey = (key: string) => /(^|\/)(index|latest|manifest)\.|(^|\/)APKINDEX/.test(key);
    const problems: string[] = [];
    for (const key of keys.filter((k) => k.endsWith('.minisig'))) {
      const document = key.slice(0, -'.minisig'.length);
      if (at('end', document) !== -1 && at('start', key) < at('end', document)) problems.push(`${key} started before ${document} was up`);
    }
    const lastRegularEnd = Math.max(-1, ...keys.filter((k) => !isPointerKey(k)).map((k) => at('end', k)));
    const pointers = keys.filter(isPointerKey);
    for (const key of pointers) if (at('start', key) < lastRegularEnd) problems.push(`pointer ${key} started before every other file was up`);
    // Pointers go up one at a time: each one's start directly follows the previous one's end.
    const pointerEvents = puts.filter((e) => isPointerKey(e.keys[0]!));
    for (let i = 0; i < pointerEvents.length; i++) {
      if (pointerEvents[i]!.event !== (i % 2 === 0 ? 'start' : 'end') || pointerEvents[i]!.keys[0] !== pointerEvents[i - (i % 2)]!.keys[0]) {
        problems.push(`pointers overlap at ${pointerEvents[i]!.keys[0]}`);
        break;
      }
    }
    return { problems, pointerOrder: pointerEvents.filter((e) => e.event === 'end').map((e) => e.keys[0]) };
  }

  /** Version `v` of a small site: 8 node documents, an image, its latest pointer, the index, the manifest, an APK repository. */
  function writeSite(v: number, options: { nodes?: number[]; resignOnly?: number[]; image?: number; apks?: number[] } = {}) {
    for (const i of options.nodes ?? []) signed(`nodes/n-${i}.json`, `{"n":${i},"v":${v}}\n`, v);
    for (const i of options.resignOnly ?? []) signed(`nodes/n-${i}.json`, readFileSync(join(mid, `nodes/n-${i}.json`)), v);
    if (options.image !== undefined) {
      signed(`os/psyopsOS-${options.image}-x86_64.iso`, Buffer.alloc(6 * MiB + options.image, options.image), v);
      signed('os/latest.json', `{"filename":"psyopsOS-${options.image}-x86_64.iso"}\n`, v);
    }
    for (const i of options.apks ?? []) put(`apk/psyopsOS/x86_64/p${i}-1.0-r0.apk`, `package ${i}`, v);
    put('apk/psyopsOS/x86_64/APKINDEX.tar.gz', `index of version ${v}`, v);
    put('schemas/x.schema.json', '{}\n', v);
    put('index.html', `<html>${v}</html>\n`, v);
    signed('manifest.json', `{"manifest":${v}}\n`, v);
    signed('index.json', `{"index":${v}}\n`, v);
  }

  it('first deploy: each signature only after its document, pointers last, document before signature', async () => {
    writeSite(1, { nodes: [0, 1, 2, 3, 4, 5, 6, 7], image: 1, apks: [1] });
    const seen = await observedDeploy(1);
    expect(seen.result.uploads).toHaveLength(28);
    expect(seen.problems).toEqual([]);
    const order = checkOrder(seen.log);
    expect(order.problems).toEqual([]);
    expect(order.pointerOrder).toEqual([
      'apk/psyopsOS/x86_64/APKINDEX.tar.gz',
      'manifest.json',
      'manifest.json.minisig',
      'os/latest.json',
      'os/latest.json.minisig',
      'index.html',
      'index.json',
      'index.json.minisig',
    ]);
  });

  it('changed pairs, one at a time: a document is newer than its signature only until that signature, the next PUT, is up', async () => {
    writeSite(2, { nodes: [1, 2, 3, 4, 5, 6, 7], resignOnly: [0], image: 2, apks: [2] });
    const seen = await observedDeploy(1);
    const uploaded = seen.result.uploads.map((u) => u.key.replace(/^midway\//, ''));
    expect(uploaded).toContain('nodes/n-0.json.minisig'); // only the timestamp changed: only the signature goes up
    expect(uploaded).not.toContain('nodes/n-0.json');
    expect(seen.problems).toEqual([]);
    expect(checkOrder(seen.log).problems).toEqual([]);
    // The only pair ever out of step is the one whose document has just gone up: its signature is next.
    for (const { after, documents } of seen.mismatched) expect(documents.filter((d) => !after.includes(d))).toEqual([]);
    const puts = seen.log.filter((e) => e.event === 'start' && e.command !== 'DeleteObjects').map((e) => e.keys[0]!);
    for (const document of ['nodes/n-3.json', 'os/psyopsOS-2-x86_64.iso', 'os/latest.json', 'index.json']) {
      expect(puts[puts.indexOf(document) + 1]).toBe(`${document}.minisig`);
    }
    expect(seen.mismatched.at(-1)!.documents).toEqual([]);
  });

  it('concurrent uploads: at most one pair per upload slot is out of step at any moment', async () => {
    writeSite(3, { nodes: [0, 1, 2, 3, 4, 5, 6, 7] });
    const seen = await observedDeploy(3);
    expect(seen.problems).toEqual([]);
    expect(checkOrder(seen.log).problems).toEqual([]);
    expect(seen.mismatched.some(({ documents }) => documents.length > 0)).toBe(true); // the observer does see the short windows
    for (const { documents } of seen.mismatched) expect(documents.length).toBeLessThanOrEqual(3);
    expect(seen.mismatched.at(-1)!.documents).toEqual([]);
  });

  it('--delete removes stale signatures in a request before their documents', async () => {
    for (const relative of ['nodes/n-7.json', 'nodes/n-7.json.minisig', 'os/psyopsOS-1-x86_64.iso', 'os/psyopsOS-1-x86_64.iso.minisig']) remove(relative);
    remove('apk/psyopsOS/x86_64/p1-1.0-r0.apk');
    writeSite(4);
    const seen = await observedDeploy(3, { delete: true });
    expect(seen.problems).toEqual([]);
    expect(checkOrder(seen.log).problems).toEqual([]);
    const deletes = seen.log.filter((e) => e.command === 'DeleteObjects');
    const finished = (key: string) => deletes.findIndex((e) => e.event === 'end' && e.keys.includes(key));
    const started = (key: string) => deletes.findIndex((e) => e.event === 'start' && e.keys.includes(key));
    for (const document of ['nodes/n-7.json', 'os/psyopsOS-1-x86_64.iso']) {
      expect(finished(`${document}.minisig`)).toBeGreaterThanOrEqual(0);
      expect(started(document)).toBeGreaterThan(finished(`${document}.minisig`));
    }
    expect(seen.result.deletions.map((k) => k.replace(/^midway\//, ''))).toEqual([
      'nodes/n-7.json.minisig',
      'os/psyopsOS-1-x86_64.iso.minisig',
      'apk/psyopsOS/x86_64/p1-1.0-r0.apk',
      'nodes/n-7.json',
      'os/psyopsOS-1-x86_64.iso',
    ]);
    // Deletions come after every upload, the pointers included.
    const lastPut = Math.max(...seen.log.map((e, i) => (e.command !== 'DeleteObjects' && e.keys[0] !== DEPLOY_STATE_KEY ? i : -1)));
    expect(seen.log.findIndex((e) => e.command === 'DeleteObjects')).toBeGreaterThan(lastPut);
  });
});
