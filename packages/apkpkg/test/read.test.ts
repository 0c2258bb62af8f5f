import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import {
  ApkChecksumError,
  ApkFormatError,
  ApkSignatureError,
  ApkUntrustedError,
  apkFileKind,
  checkAgainstIndex,
  generateApkKey,
  keyRing,
  loadKeysDir,
  readIndex,
  readPackage,
} from '../src/index.ts';
import { DEP, FIXTURES, HELLO, INDEX, members, tempDir, VECTOR_KEY_NAME } from './helpers.ts';

const keys = await loadKeysDir(FIXTURES);

describe('reading the abuild-made vectors', () => {
  it('loads only the public key from a directory that also holds the private key', () => {
    expect([...keys.keys()]).toEqual([VECTOR_KEY_NAME]);
  });

  it('skips directories, big files and non-keys in a keys directory, as apk does', async () => {
    const dir = tempDir('keysdir');
    writeFileSync(join(dir, VECTOR_KEY_NAME), readFileSync(join(FIXTURES, VECTOR_KEY_NAME)));
    writeFileSync(join(dir, 'big.iso'), Buffer.alloc(1 << 20));
    writeFileSync(join(dir, 'garbage.pub'), '-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n');
    mkdirSync(join(dir, 'sub.pub'));
    expect([...(await loadKeysDir(dir)).keys()]).toEqual([VECTOR_KEY_NAME]);
    await expect(loadKeysDir(join(dir, 'missing'))).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
  });

  it('splits psyops-hello into the stream boundaries apk sees (376/809/1462)', () => {
    const parts = members(HELLO);
    expect(parts.map((m) => m.compressed.length)).toEqual([376, 809 - 376, 1462 - 809]);
  });

  it('parses and verifies psyops-hello', () => {
    const pkg = readPackage(HELLO, { keys });
    expect(pkg.trustedBy).toBe(VECTOR_KEY_NAME);
    expect(pkg.identity).toBe('Q179XfxHT1rir/gCZJ247Iwn1KuN4=');
    expect(pkg.info).toMatchObject({
      pkgname: 'psyops-hello',
      pkgver: '1.0.0-r0',
      arch: 'noarch',
      size: 28672,
      builddate: 1700000000,
      depend: ['/bin/sh'],
      datahash: '29f17a11126753b2e3ad7359c4992a71516b06af21e95c2d2ffa6aab5e863047',
    });
    expect(pkg.files.map((f) => [f.path, f.type, f.mode.toString(8), f.target ?? f.sha1 ?? ''])).toEqual([
      ['etc', 'dir', '755', ''],
      ['etc/psyops', 'dir', '755', ''],
      ['etc/psyops/hello.conf', 'file', '644', '6638a22beb3af63a5ddfe3bf0e4350802dc9debe'],
      ['usr', 'dir', '755', ''],
      ['usr/bin', 'dir', '755', ''],
      ['usr/bin/phello', 'symlink', '777', 'psyops-hello'],
      ['usr/bin/psyops-hello', 'file', '755', 'e83781138bcda08e8d7dc43e20ee56e008d3f955'],
    ]);
    expect(apkFileKind(HELLO)).toBe('package');
  });

  it('parses and verifies psyops-dep and the vector index', () => {
    const dep = readPackage(DEP, { keys });
    expect(dep.identity).toBe('Q1GmW4wfG5hqDwaYwRUSQhHo7KdBo=');
    expect(dep.info.provides).toEqual(['cmd:psyops-dep=2.1_rc1-r3', '/bin/sh']);
    const index = readIndex(INDEX, { keys });
    expect(index.trustedBy).toBe(VECTOR_KEY_NAME);
    expect(index.description).toBe('psyops test repo');
    expect(index.entries.map((e) => [e.name, e.version, e.arch, e.size, e.identity])).toEqual([
      ['psyops-dep', '2.1_rc1-r3', 'x86_64', 1148, 'Q1GmW4wfG5hqDwaYwRUSQhHo7KdBo='],
      ['psyops-hello', '1.0.0-r0', 'x86_64', 1462, 'Q179XfxHT1rir/gCZJ247Iwn1KuN4='],
    ]);
    expect(apkFileKind(INDEX)).toBe('index');
    checkAgainstIndex(HELLO, index.entries[1]!, { keys });
    checkAgainstIndex(DEP, index.entries[0]!, { keys });
  });

  it('agrees with openssl that the vector signature covers the control stream', async () => {
    const dir = tempDir('openssl');
    const [sig, control] = members(HELLO);
    const signature = readPackage(HELLO).signatures[0]!.signature;
    writeFileSync(join(dir, 'control.tar.gz'), control!.compressed);
    writeFileSync(join(dir, 'sig'), signature);
    const result = await execa(
      'openssl',
      ['dgst', '-sha1', '-verify', join(FIXTURES, VECTOR_KEY_NAME), '-signature', join(dir, 'sig'), join(dir, 'control.tar.gz')],
      {
        timeout: 30_000,
      },
    );
    expect(result.stdout).toBe('Verified OK');
    expect(sig!.compressed.length).toBe(376);
  });
});

describe('refusing bad packages and indexes', () => {
  it('refuses a package whose data stream was changed (datahash)', () => {
    const parts = members(HELLO);
    const tar = Buffer.from(parts[2]!.data);
    const at = tar.indexOf('greeting=hello');
    tar.write('greeting=HELLO', at, 'latin1');
    const tampered = Buffer.concat([parts[0]!.compressed, parts[1]!.compressed, gzipSync(tar)]);
    expect(() => readPackage(tampered, { keys })).toThrow(ApkChecksumError);
  });

  it('refuses a file whose content does not match its APK-TOOLS.checksum.SHA1 even when datahash is fixed', () => {
    const parts = members(HELLO);
    const tar = Buffer.from(parts[2]!.data);
    const at = tar.indexOf('greeting=hello');
    tar.write('greeting=HELLO', at, 'latin1');
    // An unsigned package with a consistent datahash: only the per-file checksum catches it.
    const dataGz = gzipSync(tar);
    const control = Buffer.from(parts[1]!.data);
    const hashAt = control.indexOf('datahash = ') + 'datahash = '.length;
    control.write(createHash('sha256').update(dataGz).digest('hex'), hashAt, 'latin1');
    const pkg = Buffer.concat([gzipSync(control), dataGz]);
    expect(() => readPackage(pkg, { keys, allowUntrusted: true })).toThrow(/hello.conf does not match its checksum/);
  });

  it('refuses a changed control stream: the signature no longer matches (BAD signature)', () => {
    const parts = members(HELLO);
    const control = Buffer.from(parts[1]!.data);
    const at = control.indexOf('pkgdesc = Test');
    control.write('pkgdesc = Fake', at, 'latin1');
    const tampered = Buffer.concat([parts[0]!.compressed, gzipSync(control), parts[2]!.compressed]);
    expect(() => readPackage(tampered, { keys })).toThrow(ApkSignatureError);
    // apk: a wrong signature by a known key fails even with --allow-untrusted.
    expect(() => readPackage(tampered, { keys, allowUntrusted: true })).toThrow(ApkSignatureError);
  });

  it('refuses an unsigned package unless untrusted input is allowed', () => {
    const parts = members(HELLO);
    const unsigned = Buffer.concat([parts[1]!.compressed, parts[2]!.compressed]);
    expect(() => readPackage(unsigned, { keys })).toThrow(ApkUntrustedError);
    expect(readPackage(unsigned, { keys, allowUntrusted: true }).trustedBy).toBeUndefined();
    expect(readPackage(unsigned).identity).toBe('Q179XfxHT1rir/gCZJ247Iwn1KuN4=');
  });

  it('refuses a signature by an unknown key, and one by a different key under the trusted name', async () => {
    const other = await generateApkKey({ name: 'other@example.org', bits: 2048, now: 1 });
    expect(() => readPackage(HELLO, { keys: keyRing({ [other.keyName]: other.publicKeyPem }) })).toThrow(ApkUntrustedError);
    expect(() => readIndex(INDEX, { keys: keyRing({ [other.keyName]: other.publicKeyPem }) })).toThrow(/UNTRUSTED: signed by psyops-test-65000000.rsa.pub/);
    const impostor = keyRing({ [VECTOR_KEY_NAME]: other.publicKeyPem });
    expect(() => readPackage(HELLO, { keys: impostor })).toThrow(ApkSignatureError);
  });

  it('refuses a corrupted gzip stream', () => {
    const broken = Buffer.from(HELLO);
    broken[500] = broken[500]! ^ 0xff;
    expect(() => readPackage(broken, { keys })).toThrow(ApkFormatError);
    // A cut data stream fails its datahash, checked on the compressed bytes before inflating them.
    expect(() => readPackage(HELLO.subarray(0, 1000), { keys })).toThrow(ApkChecksumError);
    expect(() => readPackage(Buffer.from('not a package'), { keys })).toThrow(ApkFormatError);
    const brokenIndex = Buffer.from(INDEX);
    brokenIndex[600] = brokenIndex[600]! ^ 0x55;
    // With keys the signature (over the compressed index stream) fails first; without, inflating does.
    expect(() => readIndex(brokenIndex, { keys })).toThrow(ApkSignatureError);
    expect(() => readIndex(brokenIndex)).toThrow(ApkFormatError);
  });

  it('refuses a control stream that keeps its end-of-archive blocks (apk: BAD archive)', () => {
    const parts = members(HELLO);
    const control = Buffer.concat([parts[1]!.data, Buffer.alloc(1024)]);
    const pkg = Buffer.concat([gzipSync(control), parts[2]!.compressed]);
    expect(() => readPackage(pkg, { allowUntrusted: true })).toThrow(/BAD archive/);
  });

  it('refuses a package whose checksum does not match its index entry', () => {
    const index = readIndex(INDEX, { keys });
    expect(() => checkAgainstIndex(DEP, index.entries[1]!, { keys })).toThrow(ApkChecksumError);
    const wrong = { ...index.entries[1]!, identity: 'Q1AAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' };
    expect(() => checkAgainstIndex(HELLO, wrong, { keys })).toThrow(/does not match the index/);
  });

  it('refuses a changed index body', () => {
    const parts = members(INDEX);
    const tar = Buffer.from(parts[1]!.data);
    tar.write('S:9999', tar.indexOf('S:1462'), 'latin1');
    const tampered = Buffer.concat([parts[0]!.compressed, gzipSync(tar)]);
    expect(() => readIndex(tampered, { keys })).toThrow(ApkSignatureError);
    expect(() => readIndex(parts[1]!.compressed, { keys })).toThrow(ApkUntrustedError);
  });
});
