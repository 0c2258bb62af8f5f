import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { execa } from 'execa';
import { encodePublicKey, generateKeyPair, publicKeyOf } from '@psyops/signing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildSite, deploySite, UpdateInputError } from '../src/index.ts';
import { DEPLOY_STATE_KEY, createS3Client } from '../src/deploy.ts';
import { osUpdateSchema } from '../src/schemas.ts';
import { S3_ENV, startS3, tempDir, type S3Server } from './fixtures.ts';
import { slotTar } from './update-tar.ts';

const dir = tempDir('updates');
const key = generateKeyPair();
const images = join(dir, 'out');
const site = join(dir, 'site');
const publicKey = join(dir, 'key.pub');
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const build = (imagesDir = images, outDir = site) => buildSite({ outDir, signingKey: key, timestamp: 1_700_000_000, imagesDir });

beforeAll(async () => {
  mkdirSync(images, { recursive: true });
  writeFileSync(publicKey, encodePublicKey(publicKeyOf(key)));
  writeFileSync(join(images, 'psyopsOS-r9-x86_64.tar'), slotTar({ release: 'r9' }));
  writeFileSync(join(images, 'psyopsOS-r10-x86_64.tar'), slotTar({ release: 'r10', kernel: '6.12.9-0-virt' }));
  writeFileSync(join(images, 'psyopsOS-r10-x86_64.tar.minisig'), 'the build signature: site build signs the tar itself\n');
  writeFileSync(join(images, 'psyopsOS-r3-aarch64.tar'), slotTar({ release: 'r3', arch: 'aarch64', kernel: '6.12.1-0-lts' }));
  writeFileSync(join(images, 'psyopsOS-r10-x86_64.img'), Buffer.alloc(4096)); // disk images are never published
});

describe('update artifacts in buildSite', () => {
  it('the test helper writes a tar GNU tar reads in the contract order', async () => {
    const { stdout } = await execa('tar', ['-tvf', join(images, 'psyopsOS-r10-x86_64.tar')]);
    const lines = stdout.split('\n');
    expect(lines.map((l) => l.split(/\s+/).at(-1))).toEqual([
      'psyopsOS-slot.json',
      'psyopsOS-slot.json.minisig',
      '.psyopsOS-release',
      'boot/initramfs-virt',
      'boot/modloop-virt',
      'boot/rootfs.squashfs',
      'boot/vmlinuz-virt',
    ]);
    expect(lines.every((l) => l.startsWith('-rw-r--r-- 0/0'))).toBe(true);
  });

  it('publishes every tar with a signature whose trusted comment the real minisign prints', async () => {
    const result = await build();
    expect(result.updates.map((u) => u.filename)).toEqual(['psyopsOS-r10-x86_64.tar', 'psyopsOS-r3-aarch64.tar', 'psyopsOS-r9-x86_64.tar']);
    expect(readdirSync(join(site, 'os')).sort()).toEqual([
      'psyopsOS-r10-x86_64.tar',
      'psyopsOS-r10-x86_64.tar.minisig',
      'psyopsOS-r3-aarch64.tar',
      'psyopsOS-r3-aarch64.tar.minisig',
      'psyopsOS-r9-x86_64.tar',
      'psyopsOS-r9-x86_64.tar.minisig',
      'update-aarch64.json',
      'update-aarch64.json.minisig',
      'update-x86_64.json',
      'update-x86_64.json.minisig',
    ]);
    const tar = join(site, 'os', 'psyopsOS-r10-x86_64.tar');
    expect(readFileSync(tar)).toEqual(readFileSync(join(images, 'psyopsOS-r10-x86_64.tar')));
    const verified = await execa('minisign', ['-Vm', tar, '-p', publicKey]);
    const comment = 'type=psyopsOS version=r10 filename=psyopsOS-r10-x86_64.tar kernel=6.12.9-0-virt alpine=3.22.2 arch=x86_64';
    expect(verified.stdout).toContain(`Trusted comment: ${comment}`);
    expect(result.updates.find((u) => u.version === 'r10')!.trustedComment).toBe(comment);
    const aarch64 = await execa('minisign', ['-Vm', join(site, 'os', 'psyopsOS-r3-aarch64.tar'), '-p', publicKey]);
    expect(aarch64.stdout).toContain(
      'Trusted comment: type=psyopsOS version=r3 filename=psyopsOS-r3-aarch64.tar kernel=6.12.1-0-lts alpine=3.22.2 arch=aarch64',
    );
    // A signature of another file does not verify this one.
    const swapped = await execa('minisign', ['-Vm', tar, '-p', publicKey, '-x', join(site, 'os', 'psyopsOS-r9-x86_64.tar.minisig')], { reject: false });
    expect(swapped.exitCode).not.toBe(0);
  });

  it('the signed pointer per architecture names the newest release: r10 over r9', async () => {
    const pointerPath = join(site, 'os', 'update-x86_64.json');
    const text = readFileSync(pointerPath, 'utf8');
    const tar = join(site, 'os', 'psyopsOS-r10-x86_64.tar');
    expect(JSON.parse(text)).toEqual({
      format: 'psyops-os-update/1',
      version: 'r10',
      arch: 'x86_64',
      filename: 'psyopsOS-r10-x86_64.tar',
      path: 'os/psyopsOS-r10-x86_64.tar',
      size: statSync(tar).size,
      sha256: sha256(tar),
      kernel: '6.12.9-0-virt',
      alpine: '3.22.2',
    });
    expect(osUpdateSchema.parse(JSON.parse(text))).toBeTruthy();
    const verified = await execa('minisign', ['-Vm', pointerPath, '-p', publicKey]);
    expect(verified.stdout).toContain('Trusted comment: timestamp:1700000000\tfile:os/update-x86_64.json');
    expect(JSON.parse(readFileSync(join(site, 'os', 'update-aarch64.json'), 'utf8'))).toMatchObject({ version: 'r3', arch: 'aarch64' });
    // Listed like every signed document, with its schema.
    const index = JSON.parse(readFileSync(join(site, 'index.json'), 'utf8'));
    expect(index.documents).toContainEqual({
      path: 'os/update-x86_64.json',
      signature: 'os/update-x86_64.json.minisig',
      schema: 'schemas/os-update.schema.json',
    });
    expect(readdirSync(join(site, 'schemas'))).toContain('os-update.schema.json');
  });

  it('the same inputs give the same bytes', async () => {
    const before = readFileSync(join(site, 'os', 'psyopsOS-r10-x86_64.tar.minisig'));
    const pointer = readFileSync(join(site, 'os', 'update-x86_64.json.minisig'));
    await build();
    expect(readFileSync(join(site, 'os', 'psyopsOS-r10-x86_64.tar.minisig'))).toEqual(before);
    expect(readFileSync(join(site, 'os', 'update-x86_64.json.minisig'))).toEqual(pointer);
  });
});

describe('update artifacts that are refused', () => {
  const cases: [string, string, Buffer, RegExp][] = [
    [
      'first entry another file',
      'psyopsOS-r11-x86_64.tar',
      slotTar({ release: 'r11', firstName: 'boot/vmlinuz-virt' }),
      /first entry is boot\/vmlinuz-virt, not psyopsOS-slot\.json/,
    ],
    ['slot JSON invalid', 'psyopsOS-r11-x86_64.tar', slotTar({ release: 'r11', slotJson: '{not json' }), /psyopsOS-slot\.json is not a JSON object/],
    ['another format', 'psyopsOS-r11-x86_64.tar', slotTar({ release: 'r11', slotJson: '{"format":"other/1"}' }), /format "other\/1"/],
    ['version not the file name', 'psyopsOS-r12-x86_64.tar', slotTar({ release: 'r11' }), /says version r11, the file name r12/],
    ['arch not the file name', 'psyopsOS-r11-aarch64.tar', slotTar({ release: 'r11' }), /says arch x86_64, the file name aarch64/],
    ['a space in the kernel', 'psyopsOS-r11-x86_64.tar', slotTar({ release: 'r11', kernel: '6.12 virt' }), /kernel must be a string without spaces/],
    ['not a tar at all', 'psyopsOS-r11-x86_64.tar', Buffer.alloc(2048, 0x41), /not a POSIX ustar archive/],
    ['too short', 'psyopsOS-r11-x86_64.tar', Buffer.from('short'), /shorter than one tar header/],
  ];
  for (const [what, filename, bytes, reason] of cases) {
    it(`${what}: one line naming the file, the previous site untouched`, async () => {
      const bad = join(dir, `bad-${filename}-${what.replace(/\W+/g, '-')}`);
      mkdirSync(bad, { recursive: true });
      writeFileSync(join(bad, filename), bytes);
      const previous = readFileSync(join(site, 'manifest.json'));
      const error = await build(bad).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UpdateInputError);
      const message = (error as Error).message;
      expect((error as UpdateInputError).code).toBe('BAD_UPDATE_INPUT');
      expect(message).not.toContain('\n');
      expect(message).toContain(join(bad, filename));
      expect(message).toMatch(reason);
      expect(readFileSync(join(site, 'manifest.json'))).toEqual(previous);
      rmSync(bad, { recursive: true, force: true });
    });
  }
});

describe('deploying update artifacts (real S3 server)', () => {
  let s3: S3Server;
  beforeAll(async () => {
    Object.assign(process.env, S3_ENV, { AWS_EC2_METADATA_DISABLED: 'true' });
    s3 = await startS3(['site']);
  });
  afterAll(async () => {
    await s3?.close();
  });

  it('puts each pointer and its signature after the tars and signatures it names; tars are immutable', async () => {
    await build();
    const result = await deploySite({ dir: site, bucket: 'site', prefix: 'live', endpoint: s3.endpoint, region: 'us-east-1', concurrency: 4 });
    expect(result.uploads.length).toBeGreaterThan(10);
    for (let i = 0; i < 100 && !s3.created.includes(`live/${DEPLOY_STATE_KEY}`); i++) await new Promise((r) => setTimeout(r, 50));
    const order = s3.created.filter((k) => k.startsWith('live/'));
    const at = (key: string) => {
      const index = order.indexOf(`live/${key}`);
      expect(index, key).toBeGreaterThanOrEqual(0);
      return index;
    };
    for (const arch of ['x86_64', 'aarch64']) {
      const pointer = at(`os/update-${arch}.json`);
      expect(pointer).toBeLessThan(at(`os/update-${arch}.json.minisig`));
      for (const tar of order.filter((k) => k.endsWith('.tar') || k.endsWith('.tar.minisig'))) expect(order.indexOf(tar)).toBeLessThan(pointer);
    }
    expect(order.slice(-2)).toEqual(['live/index.json.minisig', `live/${DEPLOY_STATE_KEY}`]);
    const client = createS3Client({ region: 'us-east-1', endpoint: s3.endpoint });
    try {
      const tar = await client.send(new HeadObjectCommand({ Bucket: 'site', Key: 'live/os/psyopsOS-r10-x86_64.tar' }));
      expect(tar).toMatchObject({ ContentType: 'application/x-tar', CacheControl: 'public, max-age=31536000, immutable' });
      const pointer = await client.send(new HeadObjectCommand({ Bucket: 'site', Key: 'live/os/update-x86_64.json' }));
      expect(pointer).toMatchObject({ ContentType: 'application/json', CacheControl: 'public, max-age=60' });
    } finally {
      client.destroy();
    }
  });
});
