import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Decrypter, armor } from 'age-encryption';
import { execa } from 'execa';
import { encodePublicKey, publicKeyOf, verifyBytes, parseSignature, verifyFile, readSignatureFile } from '@psyops/signing';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildSite } from '../src/index.ts';
import { nodeConfigSchema, osLatestSchema, siteIndexSchema, siteManifestSchema, siteJsonSchema, type NodeConfig } from '../src/schemas.ts';
import { makeApkRepository, makeInputs, tempDir, type Workspace } from './fixtures.ts';

const dir = tempDir('build');
let ws: Workspace;
const site = () => join(dir, 'site');
const read = (path: string) => readFileSync(join(site(), path), 'utf8');

function treeHashes(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out[relative(root, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(root);
  return out;
}

const build = (overrides: Partial<Parameters<typeof buildSite>[0]> = {}) =>
  buildSite({
    outDir: site(),
    signingKey: ws.key,
    timestamp: 1_700_000_000,
    nodesDir: join(dir, 'nodes'),
    imagesDir: join(dir, 'out'),
    apkRepositoryDir: join(dir, 'apk'),
    apkTrustedKeysDir: join(dir, 'keys', 'apk'),
    lighthouses: [{ name: 'lh1', overlayIp: '10.10.8.1', publicAddresses: ['lh1.example.org:4242'] }],
    secretCacheFile: join(dir, 'cache', 'site-secrets.json'),
    ...overrides,
  });

beforeAll(async () => {
  ws = await makeInputs(dir);
  await makeApkRepository(join(dir, 'other-repo'), join(dir, 'other-keys')); // signed by a key the workspace does not trust
  writeFileSync(join(dir, 'key.pub'), encodePublicKey(publicKeyOf(ws.key)));
  await build();
});

describe('buildSite layout', () => {
  it('lays out every part of the site', () => {
    const files = Object.keys(treeHashes(site()));
    for (const expected of [
      'index.html',
      'error.html',
      'index.json',
      'index.json.minisig',
      'manifest.json',
      'manifest.json.minisig',
      'apk/psyopsOS/x86_64/APKINDEX.tar.gz',
      'apk/psyopsOS/x86_64/psyops-nodeboot-1.0-r0.apk',
      'os/psyopsOS-2026.11.1-x86_64.iso',
      'os/psyopsOS-2026.11.1-x86_64.iso.minisig',
      'os/psyopsOS-2026.9.0-x86_64.iso',
      'os/latest.json',
      'os/latest.json.minisig',
      'nodes/node-a.json',
      'nodes/node-a.json.minisig',
      'nodes/node-b.json',
      'psynet/lighthouses.json',
      'psynet/lighthouses.json.minisig',
      'schemas/node-config.schema.json',
    ]) {
      expect(files).toContain(expected);
    }
    expect(files.filter((f) => f.includes('unrelated'))).toEqual([]);
    expect(readdirSync(dir).filter((n) => n.startsWith('.site'))).toEqual([]); // no staging leftovers
  });

  it('names the newest image in os/latest.json, with the metadata in its trusted comment', async () => {
    const latest = osLatestSchema.parse(JSON.parse(read('os/latest.json')));
    const iso = readFileSync(join(site(), 'os/psyopsOS-2026.11.1-x86_64.iso'));
    expect(latest).toMatchObject({
      filename: 'psyopsOS-2026.11.1-x86_64.iso',
      version: '2026.11.1',
      kernel: '6.12.1',
      alpine: '3.22',
      size: iso.length,
      sha256: createHash('sha256').update(iso).digest('hex'),
      signature: 'os/psyopsOS-2026.11.1-x86_64.iso.minisig',
    });
    const result = await verifyFile(join(site(), latest.path), publicKeyOf(ws.key), await readSignatureFile(join(site(), latest.signature)));
    expect(result.trustedComment).toBe('filename=psyopsOS-2026.11.1-x86_64.iso version=2026.11.1 kernel=6.12.1 alpine=3.22');
    // Without a manifest: the release from the file name, unknown kernel and alpine.
    const old = parseSignature(read('os/psyopsOS-2026.9.0-x86_64.iso.minisig'));
    expect(old.trustedComment).toBe('filename=psyopsOS-2026.9.0-x86_64.iso version=2026.9.0 kernel=unknown alpine=unknown');
  });

  it('signs every JSON document; the real minisign verifies them', async () => {
    const index = siteIndexSchema.parse(JSON.parse(read('index.json')));
    expect(index.documents.map((d) => d.path)).toEqual([
      'manifest.json',
      'nodes/node-a.json',
      'nodes/node-b.json',
      'os/latest.json',
      'psynet/lighthouses.json',
    ]);
    expect(index.nodes).toEqual(['node-a', 'node-b']);
    for (const doc of [...index.documents, { path: 'index.json', signature: 'index.json.minisig' }]) {
      const run = await execa('minisign', ['-V', '-p', join(dir, 'key.pub'), '-m', join(site(), doc.path), '-x', join(site(), doc.signature)], {
        reject: false,
        timeout: 30_000,
      });
      expect(run.exitCode, `${doc.path}: ${run.stderr}`).toBe(0);
      expect(run.stdout).toContain(`Trusted comment: timestamp:1700000000\tfile:${doc.path}`);
    }
  });

  it('lists every other file with size and sha256 in manifest.json', () => {
    const manifest = siteManifestSchema.parse(JSON.parse(read('manifest.json')));
    const hashes = treeHashes(site());
    delete hashes['manifest.json'];
    delete hashes['manifest.json.minisig'];
    expect(Object.fromEntries(manifest.files.map((f) => [f.path, f.sha256]))).toEqual(hashes);
    for (const f of manifest.files) expect(statSync(join(site(), f.path)).size).toBe(f.size);
  });

  it('encrypts node secrets to the node with age; nothing secret is in plaintext', async () => {
    const text = read('nodes/node-a.json');
    expect(text).not.toContain('very secret value');
    expect(text).not.toContain('k3s-token-123');
    const config: NodeConfig = nodeConfigSchema.parse(JSON.parse(text));
    expect(config).toMatchObject({ name: 'node-a', version: 3, hostname: 'node-a', packages: ['k3s', 'htop'], services: ['sshd'] });
    const decrypter = new Decrypter();
    decrypter.addIdentity(ws.identity);
    const secretFile = config.files.find((f) => f.path === '/etc/secret.conf')!;
    expect(secretFile.mode).toBe('0600');
    if (typeof secretFile.content === 'string') throw new Error('secret published in plaintext');
    expect(await decrypter.decrypt(armor.decode(secretFile.content.age), 'text')).toBe('very secret value');
    expect(await decrypter.decrypt(armor.decode(config.k3s!.token.age), 'text')).toBe('k3s-token-123');
    expect(config.files.find((f) => f.path === '/etc/motd')).toEqual({ path: '/etc/motd', mode: '0644', content: 'hello\n' });
    expect(statSync(join(dir, 'cache', 'site-secrets.json')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, 'cache', 'site-secrets.json'), 'utf8')).not.toContain('very secret');
    expect(JSON.parse(read('nodes/node-b.json'))).toMatchObject({ hostname: 'bee', files: [], packages: [] });
  });

  it('the real age decrypts the published secrets with an identity made by age-keygen', async () => {
    const keygen = await execa('age-keygen', ['-o', join(dir, 'node-c.agekey')], { timeout: 30_000 });
    const recipient = /age1[0-9a-z]+/.exec(keygen.stderr)![0];
    writeFileSync(
      join(dir, 'nodes', 'node-c.json'),
      JSON.stringify({
        ageRecipient: recipient,
        config: { version: 1, k3s: { role: 'agent', serverUrl: 'https://10.10.8.10:6443', token: { secret: 'from-age-cli' } } },
      }),
    );
    try {
      const out = join(dir, 'site-age');
      await build({ outDir: out });
      const config = nodeConfigSchema.parse(JSON.parse(readFileSync(join(out, 'nodes', 'node-c.json'), 'utf8')));
      const decrypted = await execa('age', ['-d', '-i', join(dir, 'node-c.agekey')], { input: config.k3s!.token.age, timeout: 30_000 });
      expect(decrypted.stdout).toBe('from-age-cli');
      // Another node's identity cannot read it.
      await execa('age-keygen', ['-o', join(dir, 'other.agekey')], { timeout: 30_000 });
      const refused = await execa('age', ['-d', '-i', join(dir, 'other.agekey')], { input: config.k3s!.token.age, reject: false, timeout: 30_000 });
      expect(refused.exitCode).not.toBe(0);
    } finally {
      rmSync(join(dir, 'nodes', 'node-c.json'));
    }
  });

  it('exports JSON Schemas the documents conform to', () => {
    const schema = siteJsonSchema('node-config');
    expect(schema).toMatchObject({ type: 'object', required: expect.arrayContaining(['format', 'name', 'version', 'hostname']) });
    expect(JSON.parse(read('schemas/node-config.schema.json'))).toEqual(schema);
  });
});

describe('buildSite determinism', () => {
  it('a rebuild with no input change changes no byte (secrets included)', async () => {
    const before = treeHashes(site());
    await build();
    expect(treeHashes(site())).toEqual(before);
  });

  it('a changed input changes only what depends on it', async () => {
    const before = treeHashes(site());
    const file = join(dir, 'nodes', 'node-b.json');
    const original = readFileSync(file);
    writeFileSync(file, JSON.stringify({ config: { version: 2, hostname: 'bee' } }));
    await build();
    const after = treeHashes(site());
    const changed = Object.keys(after)
      .filter((k) => after[k] !== before[k])
      .sort();
    // index.json lists documents, not their hashes: only the node and the manifest change.
    expect(changed).toEqual(['manifest.json', 'manifest.json.minisig', 'nodes/node-b.json', 'nodes/node-b.json.minisig']);
    writeFileSync(file, original);
    // Back to the old definition, whose content is version 2's: version 2 stays published (nodes have it).
    expect((await build()).bumped).toEqual([{ name: 'node-b', definitionVersion: 1, version: 2 }]);
    expect(treeHashes(site())).toEqual(after);
    // A site without that history (the document removed) takes it again.
    rmSync(join(site(), 'nodes', 'node-b.json'));
    await build();
    expect(treeHashes(site())).toEqual(before);
  });

  it('without a timestamp, no clock is read: signatures carry only the file name', async () => {
    const out = join(dir, 'site-nots');
    await build({ outDir: out, timestamp: undefined });
    const sig = readFileSync(join(out, 'index.json.minisig'), 'utf8');
    expect(parseSignature(sig).trustedComment).toBe('file:index.json');
    const data = readFileSync(join(out, 'index.json'));
    expect((verifyBytes(data, publicKeyOf(ws.key), parseSignature(sig)) as { trustedComment: string }).trustedComment).toBe('file:index.json');
  });

  it('works with no inputs at all: an empty but valid site', async () => {
    const out = join(dir, 'site-empty');
    const result = await buildSite({
      outDir: out,
      signingKey: ws.key,
      nodesDir: join(dir, 'none'),
      imagesDir: join(dir, 'none'),
      apkRepositoryDir: join(dir, 'none'),
    });
    expect(result.nodes).toEqual([]);
    expect(existsSync(join(out, 'os', 'latest.json'))).toBe(false);
    expect(JSON.parse(readFileSync(join(out, 'psynet', 'lighthouses.json'), 'utf8')).lighthouses).toEqual([]);
  });
});

describe('buildSite bad inputs: one typed error, the previous site untouched', () => {
  const cases: { name: string; setup: () => void; code: string; message: RegExp }[] = [
    {
      name: 'node file that is not JSON',
      setup: () => writeFileSync(join(dir, 'nodes', 'broken.json'), '{ nope'),
      code: 'BAD_NODE_DEFINITION',
      message: /broken\.json is not valid JSON/,
    },
    {
      name: 'node without a version',
      setup: () => writeFileSync(join(dir, 'nodes', 'nover.json'), '{"config":{}}'),
      code: 'BAD_NODE_DEFINITION',
      message: /config\.version/,
    },
    {
      name: 'node with an unknown field',
      setup: () => writeFileSync(join(dir, 'nodes', 'extra.json'), '{"config":{"version":1,"colour":"red"}}'),
      code: 'BAD_NODE_DEFINITION',
      message: /colour/,
    },
    {
      name: 'node name with capitals',
      setup: () => writeFileSync(join(dir, 'nodes', 'Bad_Name.json'), '{"config":{"version":1}}'),
      code: 'BAD_NODE_DEFINITION',
      message: /node name "Bad_Name"/,
    },
    {
      name: 'secrets without a recipient',
      setup: () => writeFileSync(join(dir, 'nodes', 'norcpt.json'), '{"config":{"version":1,"k3s":{"role":"agent","token":{"secret":"t"}}}}'),
      code: 'BAD_NODE_DEFINITION',
      message: /no ageRecipient/,
    },
    {
      name: 'a relative file path',
      setup: () => writeFileSync(join(dir, 'nodes', 'relpath.json'), '{"config":{"version":1,"files":[{"path":"etc/x","content":"x"}]}}'),
      code: 'BAD_NODE_DEFINITION',
      message: /absolute path/,
    },
    {
      name: 'an image manifest that is not JSON',
      setup: () => writeFileSync(join(dir, 'out', 'psyopsOS-2026.11.1-x86_64.json'), 'garbage'),
      code: 'BAD_IMAGE_INPUT',
      message: /not valid JSON/,
    },
    {
      name: 'an image version with a space',
      setup: () => writeFileSync(join(dir, 'out', 'psyopsOS-2026.11.1-x86_64.json'), '{"version":"1 2"}'),
      code: 'BAD_IMAGE_INPUT',
      message: /must not contain spaces/,
    },
    {
      name: 'an APK folder without APKINDEX',
      setup: () => mkdirSync(join(dir, 'apk', 'aarch64'), { recursive: true }),
      code: 'BAD_SITE_INPUT',
      message: /no APKINDEX/,
    },
    {
      name: 'an APKINDEX signed by an untrusted key',
      setup: () => {
        mkdirSync(join(dir, 'apk', 'aarch64'), { recursive: true });
        writeFileSync(join(dir, 'apk', 'aarch64', 'APKINDEX.tar.gz'), readFileSync(join(dir, 'other-repo', 'x86_64', 'APKINDEX.tar.gz')));
      },
      code: 'BAD_SITE_INPUT',
      message: /psyops apk index/,
    },
    {
      name: 'an APKINDEX listing a package that is missing',
      setup: () => {
        mkdirSync(join(dir, 'apk', 'aarch64'), { recursive: true });
        const index = readFileSync(join(dir, 'apk', 'x86_64', 'APKINDEX.tar.gz'));
        writeFileSync(join(dir, 'apk', 'aarch64', 'APKINDEX.tar.gz'), index);
      },
      code: 'BAD_SITE_INPUT',
      message: /lists psyops-nodeboot-1\.0-r0\.apk, which is not in the repository folder/,
    },
  ];
  for (const c of cases) {
    it(`refuses ${c.name}`, async () => {
      const before = treeHashes(site());
      const snapshot = new Map<string, Buffer>();
      for (const sub of ['nodes', 'out']) for (const n of readdirSync(join(dir, sub))) snapshot.set(join(dir, sub, n), readFileSync(join(dir, sub, n)));
      c.setup();
      try {
        await expect(build()).rejects.toMatchObject({ code: c.code, message: expect.stringMatching(c.message) });
        expect(treeHashes(site())).toEqual(before);
        expect(readdirSync(dir).filter((n) => n.startsWith('.site'))).toEqual([]);
      } finally {
        // Restore the inputs for the next case.
        for (const sub of ['nodes', 'out']) for (const n of readdirSync(join(dir, sub))) if (!snapshot.has(join(dir, sub, n))) rmSync(join(dir, sub, n));
        rmSync(join(dir, 'apk', 'aarch64'), { recursive: true, force: true });
        for (const [p, data] of snapshot) writeFileSync(p, data);
      }
    });
  }

  it('never replaces an output folder that is not a site it built', async () => {
    const foreign = join(dir, 'precious');
    mkdirSync(foreign);
    writeFileSync(join(foreign, 'thesis.txt'), 'years of work');
    await expect(build({ outDir: foreign })).rejects.toMatchObject({ code: 'BAD_SITE_INPUT', message: expect.stringContaining('is not a psyops site') });
    expect(readFileSync(join(foreign, 'thesis.txt'), 'utf8')).toBe('years of work');
    writeFileSync(join(dir, 'a-file'), 'x');
    await expect(build({ outDir: join(dir, 'a-file') })).rejects.toMatchObject({ code: 'BAD_SITE_INPUT' });
    const empty = join(dir, 'empty-out');
    mkdirSync(empty);
    await build({ outDir: empty });
    expect(existsSync(join(empty, 'manifest.json'))).toBe(true);
  });

  it('refuses a lighthouse without a public address', async () => {
    await expect(build({ lighthouses: [{ name: 'x', overlayIp: '10.10.8.1', publicAddresses: [] }] })).rejects.toMatchObject({ code: 'BAD_SITE_INPUT' });
  });
});

describe('buildSite versions: a node takes each version once', () => {
  const nodesDir = join(dir, 'versions-nodes');
  const out = join(dir, 'versions-site');
  const define = (version: number, motd: string) => {
    mkdirSync(nodesDir, { recursive: true });
    writeFileSync(join(nodesDir, 'node-v.json'), JSON.stringify({ config: { version, files: [{ path: '/etc/motd', content: motd }] } }));
  };
  const buildVersions = (overrides: Partial<Parameters<typeof buildSite>[0]> = {}) =>
    buildSite({ outDir: out, signingKey: ws.key, timestamp: 1_700_000_000, nodesDir, lighthouses: [], ...overrides });
  const published = (path: string) => JSON.parse(readFileSync(join(out, path), 'utf8'));

  it('refuses a changed config whose version did not rise; --bump-versions publishes the next one and keeps it', async () => {
    define(3, 'one\n');
    expect((await buildVersions()).bumped).toEqual([]);
    const before = treeHashes(out);
    define(3, 'two\n');
    await expect(buildVersions()).rejects.toThrow(
      `${join(nodesDir, 'node-v.json')}: the config of node-v changed since the site in ${out} was built (a setting, or secrets encrypted afresh), but its version is 3 and the published one 3: ` +
        'nodes that applied version 3 would refuse it. Raise config.version to 4, or build with --bump-versions',
    );
    expect(treeHashes(out)).toEqual(before);

    const bumped = await buildVersions({ bumpVersions: true });
    expect(bumped.bumped).toEqual([{ name: 'node-v', definitionVersion: 3, version: 4 }]);
    expect(published('nodes/node-v.json')).toMatchObject({ version: 4, files: [{ content: 'two\n' }] });
    // Unchanged since: version 4 stays, byte for byte, without asking again.
    const afterBump = treeHashes(out);
    expect((await buildVersions()).bumped).toEqual([{ name: 'node-v', definitionVersion: 3, version: 4 }]);
    expect(treeHashes(out)).toEqual(afterBump);
    // The definition catching up is the same document.
    define(4, 'two\n');
    expect((await buildVersions()).bumped).toEqual([]);
    expect(treeHashes(out)).toEqual(afterBump);
    define(6, 'three\n');
    await buildVersions();
    expect(published('nodes/node-v.json').version).toBe(6);
  });

  it('numbers the lighthouse list: the next version when it changes, the same bytes when not', async () => {
    const lighthouse = { name: 'lh1', overlayIp: '10.10.8.1', publicAddresses: ['lh1.example.org:4242'] };
    const fresh = join(dir, 'versions-lh');
    const buildLighthouses = (publicAddresses: string[]) =>
      buildSite({ outDir: fresh, signingKey: ws.key, timestamp: 1_700_000_000, lighthouses: [{ ...lighthouse, publicAddresses }] });
    expect((await buildLighthouses(['lh1.example.org:4242'])).lighthousesVersion).toBe(1);
    const first = readFileSync(join(fresh, 'psynet/lighthouses.json'));
    expect((await buildLighthouses(['lh1.example.org:4242'])).lighthousesVersion).toBe(1);
    expect(readFileSync(join(fresh, 'psynet/lighthouses.json'))).toEqual(first);
    expect((await buildLighthouses(['198.51.100.1:4242'])).lighthousesVersion).toBe(2);
    // Back to the first list: still a change to a node that has version 2.
    expect((await buildLighthouses(['lh1.example.org:4242'])).lighthousesVersion).toBe(3);
    expect(JSON.parse(readFileSync(join(fresh, 'psynet/lighthouses.json'), 'utf8'))).toEqual({
      format: 'psyops-lighthouses/1',
      version: 3,
      lighthouses: [lighthouse],
    });
  });

  it('an expiry goes into the trusted comment of every JSON document; the real minisign shows it', async () => {
    define(1, 'expiring\n');
    const expiring = join(dir, 'versions-expiring');
    await buildSite({ outDir: expiring, signingKey: ws.key, timestamp: 1_700_000_000, expiresAt: 1_700_086_400, nodesDir, lighthouses: [] });
    const index = JSON.parse(readFileSync(join(expiring, 'index.json'), 'utf8')) as { documents: { path: string; signature: string }[] };
    for (const { path, signature } of index.documents) {
      expect(parseSignature(readFileSync(join(expiring, signature), 'utf8')).trustedComment, path).toBe(
        `timestamp:1700000000\tfile:${path}\texpires:1700086400`,
      );
    }
    const { stdout } = await execa('minisign', ['-V', '-p', join(dir, 'key.pub'), '-m', join(expiring, 'nodes/node-v.json')]);
    expect(stdout).toContain('Trusted comment: timestamp:1700000000\tfile:nodes/node-v.json\texpires:1700086400');
  });
});
