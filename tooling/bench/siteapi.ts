import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { CLI, median, TIMEOUT_MS, timed } from './measure.ts';
import { deploySite } from '@psyops/siteapi';

// A real S3-compatible server (s3rver) in its own process, so its work is not timed as ours
// (--openssl-legacy-provider: its listing continuation tokens use DES; see s3rver-process.mjs).
const S3RVER = join(import.meta.dirname, '..', '..', 'packages', 'siteapi', 'test', 's3rver-process.mjs');
const S3_ENV = {
  AWS_ACCESS_KEY_ID: 'S3RVER',
  AWS_SECRET_ACCESS_KEY: 'S3RVER',
  AWS_REGION: 'us-east-1',
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
};

async function startS3(dir: string): Promise<{ endpoint: string; child: ResultPromise }> {
  const child = execa('node', ['--openssl-legacy-provider', S3RVER, dir, 'psyops', 'reference'], {
    timeout: TIMEOUT_MS,
    reject: false,
    stdin: 'pipe',
    buffer: false,
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      const match = /\{"port":(\d+)\}/.exec(chunk.toString());
      if (match) resolve(Number(match[1]));
    });
    setTimeout(() => reject(new Error('s3rver did not start')), 30_000).unref();
  });
  return { endpoint: `http://127.0.0.1:${port}`, child };
}

/**
 * Deploys a `files`-file site to a local S3 server with `psyops site deploy`, first to an empty
 * prefix and then again with nothing changed, and the same with `aws s3 sync` (the reference,
 * when the AWS CLI is installed), alternating rounds; prints medians, ratios and the S3 requests
 * a no-op deploy sends.
 */
export async function benchSiteapi(files: number, rounds: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'psyops-bench-siteapi-'));
  const site = join(dir, 'site');
  let server: Awaited<ReturnType<typeof startS3>> | undefined;
  try {
    // Mostly small JSON documents and signatures, a few bigger artifacts: the shape of a real site.
    let bytes = 0;
    for (let i = 0; i < files; i++) {
      const folder = join(site, 'nodes', String(i % 20));
      mkdirSync(folder, { recursive: true });
      const data = i % 100 === 0 ? Buffer.alloc(256 * 1024, i) : Buffer.from(`${JSON.stringify({ node: i, padding: 'x'.repeat(i % 900) })}\n`);
      writeFileSync(join(folder, `node-${i}.json`), data);
      bytes += data.length;
    }
    mkdirSync(join(dir, 's3'));
    server = await startS3(join(dir, 's3'));
    const endpoint = server.endpoint;
    const aws = (await execa('aws', ['--version'], { reject: false, timeout: 30_000 }).catch(() => ({ exitCode: 1 }))).exitCode === 0;

    const ours = { first: [] as number[], noop: [] as number[] };
    const reference = { first: [] as number[], noop: [] as number[] };
    for (let round = 0; round < rounds; round++) {
      const psyops = ['site', 'deploy', site, '--bucket', 'psyops', '--endpoint', endpoint, '--prefix', `round${round}`];
      ours.first.push(await timed('node', [CLI, ...psyops], S3_ENV));
      ours.noop.push(await timed('node', [CLI, ...psyops], S3_ENV));
      if (aws) {
        const sync = ['s3', 'sync', site, `s3://reference/round${round}`, '--endpoint-url', endpoint, '--only-show-errors'];
        reference.first.push(await timed('aws', sync, S3_ENV));
        reference.noop.push(await timed('aws', sync, S3_ENV));
      }
    }
    Object.assign(process.env, S3_ENV);
    const noop = await deploySite({ dir: site, bucket: 'psyops', prefix: 'round0', endpoint, region: 'us-east-1' });

    const mib = (bytes / 2 ** 20).toFixed(1);
    const line = (what: string, mine: number[], theirs: number[]) => {
      const m = median(mine);
      const ref =
        theirs.length > 0
          ? ` | aws s3 sync ${median(theirs).toFixed(2)} s | ratio ${(m / median(theirs)).toFixed(2)}`
          : ' | aws CLI not installed: no reference';
      console.log(`siteapi ${what}: psyops ${m.toFixed(2)} s${ref}`);
    };
    console.log(`siteapi deploy of ${files} files (${mib} MiB) to s3rver on 127.0.0.1, median of ${rounds} round(s), whole processes:`);
    line('first deploy', ours.first, reference.first);
    line('no-op deploy', ours.noop, reference.noop);
    const puts = (noop.requests.PutObject ?? 0) + (noop.requests.UploadPart ?? 0);
    console.log(`siteapi no-op deploy requests: ${JSON.stringify(noop.requests)} (${puts} PUT, ${noop.uploads.length} uploads)`);
  } finally {
    server?.child.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}
