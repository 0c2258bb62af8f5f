import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { bootInQemu } from '@psyops/imagebuild';
import { verifyFile, readPublicKeyFile } from '@psyops/signing';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { serveDirectory } from '../../packages/imagebuild/test/fixtures/repository.ts';
import { buildDefaultImage, DEFAULT_HOME, DEFAULT_IMAGE_EPOCH, expectSuccess, psyops, scratchDir, serialLines } from './harness.ts';

// Issue 6: the README's main job. Outside a workspace `psyops build-iso` builds the embedded
// default image (this host's kernel, busybox and Node.js), which must boot under BIOS and UEFI.
const EPOCH = DEFAULT_IMAGE_EPOCH;
const scratch = scratchDir('build-iso');
const out = join(scratch, 'out');
let iso: string;
let release: string;

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

beforeAll(async () => {
  const built = await buildDefaultImage(scratch);
  expect(built.stderr).toMatch(/no workspace here: building the embedded default image/);
  ({ iso, release } = built);
});

describe('build-iso, embedded default', () => {
  it('writes the ISO, its minisign signature and a manifest naming every package', async () => {
    expect(release).toBe('251125');
    const manifest = JSON.parse(readFileSync(join(out, `psyopsOS-${release}-x86_64.json`), 'utf8'));
    expect(manifest).toMatchObject({ version: release, arch: 'x86_64', volumeId: `psyopsos-boot ${release} x86_64`, sha256: sha256(iso) });
    expect(manifest.packages.map((p: { name: string }) => p.name)).toEqual(
      expect.arrayContaining(['busybox', 'host-baselayout', 'nodejs', 'openssh', 'nebula']),
    );
    expect(manifest.bootPackages.map((p: { name: string }) => p.name)).toContain('linux-debian');
    const key = await readPublicKeyFile(join(DEFAULT_HOME, 'keys', 'minisign.pub'));
    const result = await verifyFile(iso, key, readFileSync(`${iso}.minisig`, 'utf8'));
    expect(result.trustedComment).toBe(`filename=psyopsOS-${release}-x86_64.iso version=${release} kernel=${manifest.kernel} alpine=none`);
  });

  it('rebuilds from the stage cache to the same bytes, and again from scratch (--rebuild)', async () => {
    const cached = join(scratch, 'out-cached');
    const again = await psyops(['build-iso', '--out', cached], { cwd: scratch, env: { SOURCE_DATE_EPOCH: EPOCH } });
    expectSuccess(again, 'cached build-iso');
    for (const stage of ['rootfs', 'modloop', 'root-image', 'initramfs', 'efi', 'apkovl', 'iso'])
      expect(again.stderr).toContain(`build-iso: ${stage} (cached)`);
    expect(sha256(join(cached, `psyopsOS-${release}-x86_64.iso`))).toBe(sha256(iso));

    const rebuilt = join(scratch, 'out-rebuilt');
    const full = await psyops(['build-iso', '--rebuild', '--out', rebuilt], { cwd: scratch, env: { SOURCE_DATE_EPOCH: EPOCH } });
    expectSuccess(full, 'build-iso --rebuild');
    expect(full.stderr).not.toContain('(cached)');
    expect(sha256(join(rebuilt, `psyopsOS-${release}-x86_64.iso`))).toBe(sha256(iso));
  });

  for (const uefi of [false, true]) {
    it(`boots into RAM under ${uefi ? 'UEFI' : 'BIOS'}: media found, overlay root in RAM, apkovl applied, postboot ran`, async () => {
      const serialLog = join(scratch, `serial-${uefi ? 'uefi' : 'bios'}.log`);
      const boot = await bootInQemu({ iso, uefi, timeoutMs: 240_000, serialLog, until: /psyopsOS: postboot[^\n]*\n|psyops-init: FATAL[^\n]*\n/ });
      const lines = serialLines(boot.serial);
      const context = `serial log (${serialLog}):\n${boot.serial.slice(-4000)}`;
      expect(boot.reason, context).toBe('matched');
      expect(lines, context).toContain(`psyops-init: boot media /dev/sr0 label="psyopsos-boot ${release} x86_64"`);
      expect(
        lines.some((line) => /^psyops-init: modloop \S+ mounted$/.test(line)),
        context,
      ).toBe(true);
      expect(lines, context).toContain('psyops-init: root: rootfs.squashfs in RAM under an overlay');
      expect(lines, context).toContain('psyops-init: apkovl psyopsOS-bootstrap.apkovl.tar.gz applied');
      expect(lines, context).toContain(`psyopsOS: booted release=${release} root=overlay`);
      expect(
        lines.some((line) => line.startsWith('psyopsOS: postboot')),
        context,
      ).toBe(true);
      expect(
        lines.some((line) => line.includes('FATAL')),
        context,
      ).toBe(false);
    });
  }
});

describe('build-iso, a workspace over the same repository', () => {
  const workspace = join(scratch, 'ws');
  const hostRepo = join(DEFAULT_HOME, 'host-repo');

  beforeAll(async () => {
    expectSuccess(await psyops(['init', '--no-password', workspace], { cwd: scratch }), 'init');
    const configPath = join(workspace, 'psyops.config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8'));
    config.repositories = [{ url: hostRepo, keys: join(hostRepo, 'keys') }];
    config.image = { ...config.image, world: ['host-baselayout', 'busybox', 'nodejs'], kernel: 'debian', initramfsPackages: ['busybox'], release: 'ws1' };
    writeFileSync(configPath, JSON.stringify(config, null, 2));
  });

  it('rebuilds only the apkovl and the ISO after an overlay change, and the new file is in the image', async () => {
    const first = await psyops(['build-iso'], { cwd: workspace, env: { SOURCE_DATE_EPOCH: EPOCH } });
    expectSuccess(first, 'first workspace build');
    mkdirSync(join(workspace, 'overlay', 'etc'), { recursive: true });
    writeFileSync(join(workspace, 'overlay', 'etc', 'psyops-e2e'), 'overlay file\n');
    const second = await psyops(['build-iso'], { cwd: workspace, env: { SOURCE_DATE_EPOCH: EPOCH } });
    expectSuccess(second, 'overlay-only rebuild');
    for (const stage of ['rootfs', 'modloop', 'root-image', 'initramfs', 'efi']) expect(second.stderr).toContain(`build-iso: ${stage} (cached)`);
    for (const stage of ['apkovl', 'iso']) expect(second.stderr).not.toContain(`build-iso: ${stage} (cached)`);
    const image = join(workspace, 'out', 'psyopsOS-ws1-x86_64.iso');
    const extracted = join(scratch, 'apkovl.tar.gz');
    await execa('xorriso', ['-osirrox', 'on', '-indev', image, '-extract', '/psyopsOS-bootstrap.apkovl.tar.gz', extracted], { timeout: 60_000 });
    const listing = await execa('tar', ['-tzvf', extracted], { timeout: 60_000 });
    expect(String(listing.stdout)).toMatch(/-rw-r--r-- root\/root +13 .* etc\/psyops-e2e\n/);
  });

  it('builds from the same repository served over HTTP on 127.0.0.1, then offline from the cache', async () => {
    const server = await serveDirectory(hostRepo);
    const configPath = join(workspace, 'psyops.config.json');
    const config = JSON.parse(readFileSync(configPath, 'utf8'));
    config.repositories = [{ url: server.url, keys: join(hostRepo, 'keys') }];
    writeFileSync(configPath, JSON.stringify(config, null, 2));
    try {
      expectSuccess(await psyops(['build-iso', '--out', join(scratch, 'out-http')], { cwd: workspace, env: { SOURCE_DATE_EPOCH: EPOCH } }), 'build over HTTP');
      expect(server.requests.some((path) => path.endsWith('/x86_64/APKINDEX.tar.gz'))).toBe(true);
    } finally {
      await server.close();
    }
    const offline = await psyops(['build-iso', '--offline', '--out', join(scratch, 'out-offline')], { cwd: workspace, env: { SOURCE_DATE_EPOCH: EPOCH } });
    expectSuccess(offline, 'offline build');
    expect(sha256(join(scratch, 'out-offline', 'psyopsOS-ws1-x86_64.iso'))).toBe(sha256(join(scratch, 'out-http', 'psyopsOS-ws1-x86_64.iso')));
  });
});
