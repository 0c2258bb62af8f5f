import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { buildPackage, InvalidSpecError, keyRing, readPackage, readSigningKey, readSpecFile, type PackageSpec } from '../src/index.ts';
import { signatureMember } from '../src/build.ts';
import { EPOCH, FIXTURES, HELLO, members, tempDir, VECTOR_KEY, VECTOR_KEY_NAME } from './helpers.ts';

const vectorKeys = keyRing({ [VECTOR_KEY_NAME]: readFileSync(join(FIXTURES, VECTOR_KEY_NAME)) });

/** The inputs abuild got for psyops-hello (see dump.txt): same files, modes, metadata. */
function helloTree(): string {
  const dir = tempDir('hello');
  mkdirSync(join(dir, 'pkg/etc/psyops'), { recursive: true });
  mkdirSync(join(dir, 'pkg/usr/bin'), { recursive: true });
  writeFileSync(join(dir, 'pkg/etc/psyops/hello.conf'), 'greeting=hello\n');
  writeFileSync(join(dir, 'pkg/usr/bin/psyops-hello'), '#!/bin/sh\necho hello from psyops\n');
  chmodSync(join(dir, 'pkg/usr/bin/psyops-hello'), 0o755);
  chmodSync(join(dir, 'pkg/etc/psyops/hello.conf'), 0o644);
  for (const d of ['pkg/etc', 'pkg/etc/psyops', 'pkg/usr', 'pkg/usr/bin']) chmodSync(join(dir, d), 0o755);
  symlinkSync('psyops-hello', join(dir, 'pkg/usr/bin/phello'));
  return dir;
}

const HELLO_SPEC: PackageSpec = {
  name: 'psyops-hello',
  version: '1.0.0-r0',
  arch: 'noarch',
  description: 'Test package for psyops format notes',
  url: 'https://example.invalid/psyops',
  license: 'MIT',
  packager: 'Psyops Test <test@example.invalid>',
  maintainer: 'Psyops Test <test@example.invalid>',
  commit: '0000000000000000000000000000000000000000',
  depends: ['/bin/sh'],
  tree: 'pkg',
};

describe('building like abuild', () => {
  it('reproduces the abuild data tar, .PKGINFO and control tar of psyops-hello byte for byte', async () => {
    const dir = helloTree();
    const key = await readSigningKey(VECTOR_KEY);
    const built = await buildPackage(HELLO_SPEC, { sourceDateEpoch: EPOCH, baseDir: dir, key, generatedBy: 'abuild 3.11.0' });
    expect(built.fileName).toBe('psyops-hello-1.0.0-r0.apk');
    const ours = members(built.bytes);
    const theirs = members(HELLO);
    expect(ours).toHaveLength(3);
    // Data tar: identical (pax headers, checksums, legacy linkname checksums, record padding).
    expect(ours[2]!.data.equals(theirs[2]!.data)).toBe(true);
    // .PKGINFO: identical except datahash, which hashes the gzip bytes (zlib != GNU gzip deflate).
    const theirPkgInfo = readFileSync(join(FIXTURES, 'psyops-hello.PKGINFO'), 'utf8');
    const ourHash = readPackage(built.bytes).info.datahash!;
    expect(built.pkginfoText).toBe(theirPkgInfo.replace(/^datahash = .*$/m, `datahash = ${ourHash}`));
    // Control tar: identical once the vector's .PKGINFO carries our datahash (same length).
    const theirControl = Buffer.from(theirs[1]!.data);
    const hashAt = theirControl.indexOf('datahash = ') + 'datahash = '.length;
    theirControl.write(ourHash, hashAt, 'latin1');
    const checksumFixed = Buffer.from(ours[1]!.data);
    // The .PKGINFO header checksum does not depend on content, so the headers match too.
    expect(checksumFixed.equals(theirControl)).toBe(true);
    // Signature tar: the same key over the vector's control stream gives the vector's signature stream.
    const vectorSig = members(signatureMember(theirs[1]!.compressed, key, 'RSA', EPOCH))[0]!.data;
    expect(vectorSig.equals(theirs[0]!.data)).toBe(true);
    // And our package verifies with the vector's public key.
    expect(readPackage(built.bytes, { keys: vectorKeys }).trustedBy).toBe(VECTOR_KEY_NAME);
  });

  it('reproduces the abuild data tar of psyops-dep (inline files instead of a tree)', async () => {
    const built = await buildPackage(
      {
        name: 'psyops-dep',
        version: '2.1_rc1-r3',
        arch: 'noarch',
        description: 'Dependency test',
        url: 'https://example.invalid/psyops',
        license: 'MIT',
        provides: ['cmd:psyops-dep=2.1_rc1-r3', '/bin/sh'],
        files: [{ path: 'usr/bin/psyops-dep', mode: '0755', content: '#!/bin/sh\necho dep\n' }],
      },
      { sourceDateEpoch: EPOCH },
    );
    const dep = readFileSync(join(FIXTURES, 'psyops-dep-2.1_rc1-r3.apk'));
    expect(members(built.bytes)[1]!.data.equals(members(dep)[2]!.data)).toBe(true);
    // (The vector's size = 4096 does not follow abuild's du -sk rule the psyops-hello vector shows; not compared.)
  });

  it('is deterministic: the same spec and SOURCE_DATE_EPOCH give identical bytes', async () => {
    const dir = helloTree();
    const key = await readSigningKey(VECTOR_KEY);
    const a = await buildPackage(HELLO_SPEC, { sourceDateEpoch: EPOCH, baseDir: dir, key });
    const b = await buildPackage(HELLO_SPEC, { sourceDateEpoch: EPOCH, baseDir: dir, key });
    expect(a.bytes.equals(b.bytes)).toBe(true);
    const c = await buildPackage(HELLO_SPEC, { sourceDateEpoch: EPOCH + 1, baseDir: dir, key });
    expect(c.bytes.equals(a.bytes)).toBe(false);
  });

  it('signs so that openssl verifies it (RSA/SHA-1 and RSA256/SHA-256)', async () => {
    const dir = helloTree();
    const key = await readSigningKey(VECTOR_KEY);
    for (const [type, digest] of [
      ['RSA', '-sha1'],
      ['RSA256', '-sha256'],
    ] as const) {
      const built = await buildPackage(HELLO_SPEC, { sourceDateEpoch: EPOCH, baseDir: dir, key, signatureType: type });
      const pkg = readPackage(built.bytes, { keys: vectorKeys });
      expect(pkg.signatures.map((s) => `${s.type}.${s.keyName}`)).toEqual([`${type}.${VECTOR_KEY_NAME}`]);
      writeFileSync(join(dir, 'control.gz'), members(built.bytes)[1]!.compressed);
      writeFileSync(join(dir, 'sig'), pkg.signatures[0]!.signature);
      const result = await execa(
        'openssl',
        ['dgst', digest, '-verify', join(FIXTURES, VECTOR_KEY_NAME), '-signature', join(dir, 'sig'), join(dir, 'control.gz')],
        {
          timeout: 30_000,
          reject: false,
        },
      );
      expect(result.stdout).toBe('Verified OK');
      // A flipped signature byte must not verify (the check can fail).
      const bad = Buffer.from(pkg.signatures[0]!.signature);
      bad[10] = bad[10]! ^ 1;
      writeFileSync(join(dir, 'sig'), bad);
      const refused = await execa(
        'openssl',
        ['dgst', digest, '-verify', join(FIXTURES, VECTOR_KEY_NAME), '-signature', join(dir, 'sig'), join(dir, 'control.gz')],
        {
          timeout: 30_000,
          reject: false,
        },
      );
      expect(refused.stdout).toBe('Verification failure');
    }
  });

  it('builds the issue example spec (tree + inline files + post-install script) from a JSON file', async () => {
    const dir = tempDir('example');
    mkdirSync(join(dir, 'root/usr/bin'), { recursive: true });
    writeFileSync(join(dir, 'root/usr/bin/hello'), '#!/bin/sh\necho hello\n', { mode: 0o755 });
    writeFileSync(join(dir, 'hello.post-install'), '#!/bin/sh\necho installed\n');
    writeFileSync(
      join(dir, 'hello.json'),
      JSON.stringify({
        name: 'hello',
        version: '1.2.3-r0',
        arch: 'x86_64',
        description: 'Says hello',
        url: 'https://example.org',
        license: 'MIT',
        depends: ['busybox'],
        tree: 'root',
        files: [{ path: 'etc/hello.conf', mode: '0644', content: 'greeting=hi\n' }],
        scripts: { 'post-install': 'hello.post-install' },
      }),
    );
    const { spec, baseDir } = await readSpecFile(join(dir, 'hello.json'));
    const built = await buildPackage(spec, { sourceDateEpoch: EPOCH, baseDir });
    const pkg = readPackage(built.bytes);
    expect(pkg.info.depend).toEqual(['busybox', '/bin/sh']); // /bin/sh added for the #!/bin/sh script, like abuild
    expect(Object.keys(pkg.scripts)).toEqual(['.post-install']);
    expect(pkg.scripts['.post-install']!.toString()).toBe('#!/bin/sh\necho installed\n');
    expect(pkg.files.map((f) => `${f.path}:${f.mode.toString(8)}`)).toEqual(['etc:755', 'etc/hello.conf:644', 'usr:755', 'usr/bin:755', 'usr/bin/hello:755']);
    // YAML gives the same package.
    writeFileSync(
      join(dir, 'hello.yaml'),
      `name: hello\nversion: 1.2.3-r0\narch: x86_64\ndescription: Says hello\nurl: https://example.org\nlicense: MIT\ndepends: [busybox]\ntree: root\nfiles:\n  - { path: etc/hello.conf, mode: "0644", content: "greeting=hi\\n" }\nscripts:\n  post-install: hello.post-install\n`,
    );
    const yaml = await readSpecFile(join(dir, 'hello.yaml'));
    expect((await buildPackage(yaml.spec, { sourceDateEpoch: EPOCH, baseDir: yaml.baseDir })).bytes.equals(built.bytes)).toBe(true);
  });

  it('writes symlinks, directories, owners and all metadata fields', async () => {
    const built = await buildPackage(
      {
        name: 'meta',
        version: '1.0-r1',
        arch: 'x86_64',
        description: 'd',
        url: 'u',
        license: 'GPL-2.0-only',
        origin: 'meta-src',
        provides: ['cmd:meta=1.0-r1'],
        install_if: ['foo', 'bar>=2'],
        replaces: ['old-meta'],
        replaces_priority: 5,
        provider_priority: 10,
        triggers: ['/usr/share/meta'],
        scripts: { trigger: { content: '#!/bin/sh\n' }, 'pre-install': { content: '#!/bin/busybox sh\n' } },
        files: [
          { path: 'var/lib/meta', type: 'dir', mode: '0700', uid: 100, gid: 101, uname: 'meta', gname: 'meta' },
          { path: 'usr/bin/meta-link', type: 'symlink', target: '/bin/busybox' },
          { path: 'etc/secret', mode: 0o600, contentBase64: Buffer.from('s3cret').toString('base64') },
        ],
      },
      { sourceDateEpoch: EPOCH },
    );
    const pkg = readPackage(built.bytes);
    expect(pkg.pkginfoText).toContain('\norigin = meta-src\n');
    expect(pkg.pkginfoText).toContain(
      '\nreplaces_priority = 5\nprovider_priority = 10\nlicense = GPL-2.0-only\nreplaces = old-meta\ndepend = /bin/sh\nprovides = cmd:meta=1.0-r1\ntriggers = /usr/share/meta\ninstall_if = foo bar>=2\n',
    );
    expect(Object.keys(pkg.scripts)).toEqual(['.pre-install', '.trigger']);
    const byPath = Object.fromEntries(pkg.files.map((f) => [f.path, f]));
    expect(byPath['var/lib/meta']).toMatchObject({ type: 'dir', mode: 0o700, uid: 100, gid: 101, uname: 'meta' });
    expect(byPath['usr/bin/meta-link']).toMatchObject({ type: 'symlink', target: '/bin/busybox' });
    expect(byPath['etc/secret']).toMatchObject({ mode: 0o600, size: 6 });
    expect(byPath['var/lib']).toMatchObject({ type: 'dir', mode: 0o755 });
  });
});

describe('bad specs', () => {
  const base: PackageSpec = {
    name: 'x',
    version: '1.0-r0',
    arch: 'noarch',
    description: 'd',
    url: 'u',
    license: 'MIT',
    files: [{ path: 'etc/x', content: 'x' }],
  };
  const bad: [string, unknown, RegExp][] = [
    ['invalid version', { ...base, version: '1.0-beta' }, /invalid version "1.0-beta"/],
    ['name with bad characters', { ...base, name: 'hello world' }, /invalid package name "hello world"/],
    ['name with a slash', { ...base, name: '../evil' }, /invalid package name/],
    ['missing description', { ...base, description: undefined }, /missing field "description"/],
    ['missing name', { ...base, name: undefined }, /missing field "name"/],
    ['missing arch', { ...base, arch: '' }, /missing field "arch"/],
    ['unknown field', { ...base, dependz: [] }, /unknown field "dependz"/],
    ['path escaping with ..', { ...base, files: [{ path: '../etc/passwd', content: 'x' }] }, /escapes the package/],
    ['path escaping inside', { ...base, files: [{ path: 'etc/../../x', content: 'x' }] }, /escapes the package/],
    ['absolute path', { ...base, files: [{ path: '/etc/passwd', content: 'x' }] }, /must be relative/],
    ['hidden top-level name', { ...base, files: [{ path: '.PKGINFO', content: 'x' }] }, /apk skips/],
    ['bad dependency', { ...base, depends: ['foo>=bar'] }, /not a valid version/],
    ['bad mode', { ...base, files: [{ path: 'etc/x', content: 'x', mode: '999' }] }, /mode must be an octal/],
    ['file without content', { ...base, files: [{ path: 'etc/x' }] }, /exactly one of/],
    ['symlink without target', { ...base, files: [{ path: 'etc/x', type: 'symlink' }] }, /needs "target"/],
    ['triggers without trigger script', { ...base, triggers: ['/usr'] }, /needs a "trigger" script/],
    ['unknown script', { ...base, scripts: { 'post-remove': { content: 'x' } } }, /unknown script "post-remove"/],
    [
      'file below a file',
      {
        ...base,
        files: [
          { path: 'etc/x', content: 'x' },
          { path: 'etc/x/y', content: 'y' },
        ],
      },
      /is a file but etc\/x\/y is inside it/,
    ],
  ];
  it.each(bad)('refuses %s', async (_what, spec, message) => {
    await expect(buildPackage(spec as PackageSpec, { sourceDateEpoch: EPOCH })).rejects.toThrow(InvalidSpecError);
    await expect(buildPackage(spec as PackageSpec, { sourceDateEpoch: EPOCH })).rejects.toThrow(message);
  });

  it('refuses a spec file that is not valid YAML/JSON, with the file named', async () => {
    const dir = tempDir('badspec');
    writeFileSync(join(dir, 'a.json'), '{ "name": ');
    await expect(readSpecFile(join(dir, 'a.json'))).rejects.toThrow(/a.json is not valid JSON/);
    await expect(readSpecFile(join(dir, 'missing.yaml'))).rejects.toThrow(/not found/);
  });
});
