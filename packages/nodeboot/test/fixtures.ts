import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, onTestFinished } from 'vitest';
import { createCa, encodeCertificatePem, encodeHostPrivateKey, generateHostKeyPair, issueHostCertificate, parseCidr } from '@psyops/psynet';
import { encodePublicKey, generateKeyPair, signBytes, type SecretKey } from '@psyops/signing';
import { buildSite, serveSite, type Lighthouse, type SiteServer } from '@psyops/siteapi';
import { generateNodeSecrets, writeSecretImage, type NodeSecrets } from '../src/node-secrets.js';

/** A temporary directory, removed after the test that made it (or, at file level, after the file). */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `psyops-${prefix}-`));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  try {
    onTestFinished(remove);
  } catch {
    afterAll(remove);
  }
  return dir;
}

/** A psynet CA and a host certificate for `name` (PEM), as node create puts them on the volume. */
export function psynetFixture(name: string): { hostCert: string; hostKey: string; caCert: string } {
  const now = Math.floor(Date.now() / 1000);
  const network = parseCidr('10.10.8.0/22')!;
  const { cert: ca, key: caKey } = createCa({
    name: 'psyops test',
    durationSeconds: 86_400,
    now: now - 60,
    ips: [{ address: network.first, mask: network.mask }],
  });
  const pair = generateHostKeyPair();
  const cert = issueHostCertificate({
    ca,
    caKey,
    name,
    ip: { address: network.first + 0x201, mask: network.mask },
    groups: ['psyopsOS'],
    publicKey: pair.publicKey,
    now: now - 60,
  });
  return { hostCert: encodeCertificatePem(cert), hostKey: encodeHostPrivateKey(pair.privateKey), caCert: encodeCertificatePem(ca) };
}

export const NODE = 'test-node-1';
export const MAC = '52:54:00:12:34:56';
/** Plaintexts that must never appear in a log or a world-readable file. */
export const FILE_SECRET = 'file-secret-8d1f0c';
export const K3S_TOKEN = 'k3s-token-77ab21';
export const LIGHTHOUSES: Lighthouse[] = [{ name: 'lighthouse1', overlayIp: '10.10.8.1', publicAddresses: ['203.0.113.10:4242'] }];

export function nodeDefinition(ageRecipient: string, version: number): object {
  return {
    ageRecipient,
    config: {
      version,
      files: [
        { path: '/etc/motd', content: `welcome to ${NODE}\n` },
        { path: '/etc/app/token', mode: '0600', content: { secret: FILE_SECRET } },
      ],
      services: ['app'],
      k3s: { role: 'agent', serverUrl: 'https://10.10.8.10:6443', token: { secret: K3S_TOKEN } },
      firewall: [{ port: 22, proto: 'tcp', groups: ['admins'] }],
    },
  };
}

export interface World {
  dir: string;
  signingKey: SecretKey;
  secrets: NodeSecrets;
  image: string;
  siteDir: string;
  /** Rebuilds the site with this config version (`reset`: from scratch, as if the site had never had a higher one). */
  publish(version: number, options?: { reset?: boolean }): Promise<void>;
  server: SiteServer;
}

/** A workspace-like world: a secret image made as node create makes it, and a signed site served on 127.0.0.1. */
export async function makeWorld(): Promise<World> {
  const dir = tempDir('nodeboot');
  const signingKey = generateKeyPair();
  const secrets = await generateNodeSecrets({ name: NODE, mac: MAC, minisignPublicKey: encodePublicKey(signingKey), psynet: psynetFixture(NODE) });
  const image = join(dir, 'secret.img');
  await writeSecretImage(image, secrets.files);
  const nodesDir = join(dir, 'nodes');
  const siteDir = join(dir, 'site');
  await mkdir(nodesDir);
  const publish = async (version: number, { reset = false } = {}) => {
    await writeFile(join(nodesDir, `${NODE}.json`), JSON.stringify(nodeDefinition(secrets.ageRecipient, version)));
    // The served folder stays (the server serves it by path): only its versioned documents go.
    if (reset) for (const path of [`nodes/${NODE}.json`, 'psynet/lighthouses.json']) rmSync(join(siteDir, path), { force: true });
    await buildSite({
      outDir: siteDir,
      signingKey,
      nodesDir,
      lighthouses: LIGHTHOUSES,
      timestamp: 1_790_000_000,
      secretCacheFile: join(dir, 'secret-cache.json'),
    });
  };
  await publish(3);
  const server = await serveSite({ root: siteDir });
  afterAll(() => server.close());
  return { dir, signingKey, secrets, image, siteDir, publish, server };
}

/**
 * A site of its own for one node definition (`config` is its `config`), served on 127.0.0.1; `sign`
 * replaces the published config with any document, signed as site build signs it (for what site
 * build itself would refuse).
 */
export async function siteFor(world: World, config: object): Promise<{ url: string; siteDir: string; sign(document: object): void }> {
  const dir = tempDir('ownsite');
  const nodesDir = join(dir, 'nodes');
  const siteDir = join(dir, 'site');
  await mkdir(nodesDir);
  await writeFile(join(nodesDir, `${NODE}.json`), JSON.stringify({ ageRecipient: world.secrets.ageRecipient, config }));
  await buildSite({ outDir: siteDir, signingKey: world.signingKey, nodesDir, lighthouses: LIGHTHOUSES, timestamp: 1_790_000_000 });
  const server = await serveSite({ root: siteDir });
  afterAll(() => server.close());
  const path = `nodes/${NODE}.json`;
  const sign = (document: object) => {
    const json = Buffer.from(JSON.stringify(document));
    writeFileSync(join(siteDir, path), json);
    writeFileSync(join(siteDir, `${path}.minisig`), signBytes(json, world.signingKey, { trustedComment: `timestamp:1790000000\tfile:${path}` }));
  };
  return { url: server.url, siteDir, sign };
}
