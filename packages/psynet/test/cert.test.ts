import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import nacl from 'tweetnacl';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CaConstraintError,
  CaExpiredError,
  CaKeyMismatchError,
  certificateFingerprint,
  CertificateFormatError,
  CertificateSignatureError,
  certificateToJson,
  createCa,
  DurationError,
  encodeCertificatePem,
  formatCertificateJson,
  formatCertificateText,
  generateHostKeyPair,
  hostPublicKeyOf,
  issueHostCertificate,
  parseCaPool,
  parseCertificatePem,
  parseDuration,
  parseHostPrivateKey,
  parseHostPublicKey,
  UnknownIssuerError,
  verifyCertificate,
  CertificateExpiredError,
  InvalidCaError,
} from '../src/index.ts';
import { assertCaUsable } from '../src/ca.ts';
import { checkSignature, marshalCertificate, marshalDetails, signCertificate } from '../src/cert.ts';
import { encodeCaPrivateKey, encodeHostPublicKey, parseCaPrivateKey } from '../src/keys.ts';
import { decodePemBlocks } from '../src/pem.ts';

const fixtures = join(import.meta.dirname, 'fixtures');
const fixture = (name: string) => readFileSync(join(fixtures, name), 'utf8');
const now = () => Math.floor(Date.now() / 1000);
const NEBULA_CERT = '/usr/bin/nebula-cert';

const dir = mkdtempSync(join(tmpdir(), 'psynet-cert-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// nebula-cert prints times in the local zone; compare in UTC.
const savedTz = process.env.TZ;
beforeAll(() => {
  process.env.TZ = 'UTC';
});
afterAll(() => {
  process.env.TZ = savedTz;
});

const nebulaCert = (args: string[]) => execa(NEBULA_CERT, args, { cwd: dir, timeout: 30_000, reject: false, env: { TZ: 'UTC' } });

describe('Nebula v1 certificates, against the vectors made by nebula-cert 1.6.1', () => {
  for (const name of ['ca', 'node1', 'lighthouse1']) {
    it(`${name}.crt: parse and re-encode give the same bytes, fingerprint and print -json`, () => {
      const pem = fixture(`${name}.crt`);
      const cert = parseCertificatePem(pem);
      expect(encodeCertificatePem(cert)).toBe(pem);
      const expected = JSON.parse(fixture(`${name}.print.json`));
      expect(certificateFingerprint(cert)).toBe(expected.fingerprint);
      expect(certificateToJson(cert)).toEqual(expected);
      expect(`${formatCertificateJson(cert)}\n`).toBe(fixture(`${name}.print.json`));
    });
  }

  it('prints the text form exactly as nebula-cert print', () => {
    expect(`${formatCertificateText(parseCertificatePem(fixture('node1.crt')))}\n`).toBe(fixture('node1.print.txt'));
  });

  it('prints times in the local zone as nebula-cert does', async () => {
    for (const zone of ['America/Chicago', 'Europe/Berlin', 'UTC']) {
      process.env.TZ = zone;
      try {
        const cert = parseCertificatePem(fixture('node1.crt'));
        const json = await execa(NEBULA_CERT, ['print', '-json', '-path', join(fixtures, 'node1.crt')], { timeout: 30_000, env: { TZ: zone } });
        expect(formatCertificateJson(cert), zone).toBe(json.stdout);
        const text = await execa(NEBULA_CERT, ['print', '-path', join(fixtures, 'node1.crt')], { timeout: 30_000, env: { TZ: zone } });
        expect(formatCertificateText(cert), zone).toBe(text.stdout);
      } finally {
        process.env.TZ = 'UTC';
      }
    }
  });

  it('reproduces nebula-cert signatures byte for byte (Ed25519 over the details)', () => {
    const ca = parseCaPrivateKey(fixture('ca.key'));
    expect(encodeCaPrivateKey(ca.secretKey)).toBe(fixture('ca.key'));
    for (const name of ['ca', 'node1', 'lighthouse1']) {
      const cert = parseCertificatePem(fixture(`${name}.crt`));
      expect(Buffer.from(signCertificate(cert.details, ca.secretKey).signature)).toEqual(Buffer.from(cert.signature));
      expect(checkSignature(cert, ca.publicKey)).toBe(true);
    }
  });

  it('derives host public keys as nebula does (unclamped private key in the file)', () => {
    const node1 = parseCertificatePem(fixture('node1.crt'));
    expect(Buffer.from(hostPublicKeyOf(parseHostPrivateKey(fixture('node1.key'))))).toEqual(Buffer.from(node1.details.publicKey));
    const pub = parseHostPublicKey(fixture('host2.pub'));
    expect(encodeHostPublicKey(pub)).toBe(fixture('host2.pub'));
    expect(Buffer.from(hostPublicKeyOf(parseHostPrivateKey(fixture('host2.key'))))).toEqual(Buffer.from(pub));
    expect(Buffer.from(parseCertificatePem(fixture('lighthouse1.crt')).details.publicKey)).toEqual(Buffer.from(pub));
  });

  it('verifies the vector host certificates against the vector CA', () => {
    const pool = parseCaPool(fixture('ca.crt'), now());
    expect(verifyCertificate(parseCertificatePem(fixture('node1.crt')), pool, now()).details.name).toBe('psyops test CA');
    expect(verifyCertificate(parseCertificatePem(fixture('lighthouse1.crt')), pool, now()).details.name).toBe('psyops test CA');
  });

  it('encodes lengths of 128 bytes and more with two-byte varints', () => {
    const ca = parseCaPrivateKey(fixture('ca.key'));
    const caCert = parseCertificatePem(fixture('ca.crt'));
    const cert = issueHostCertificate({
      ca: caCert,
      caKey: ca,
      name: 'a-rather-long-host-name-to-push-the-details-over-128-bytes',
      ip: { address: 0x0a0a0a05, mask: 0xfffffc00 },
      groups: ['psyopsOS', 'clients'],
      publicKey: generateHostKeyPair().publicKey,
      now: now(),
    });
    const raw = marshalCertificate(cert);
    expect(raw[1]! & 0x80).toBe(0x80);
    expect(Buffer.from(marshalCertificate(parseCertificatePem(encodeCertificatePem(cert))))).toEqual(Buffer.from(raw));
  });
});

describe('interop with the real nebula-cert', () => {
  it('nebula-cert verifies and prints what psyops issues, with the same fields and fingerprint', async () => {
    const t = now();
    const { cert: ca, key } = createCa({ name: 'interop CA', durationSeconds: 3600 * 24, now: t, ips: [{ address: 0x0a0a0800, mask: 0xfffffc00 }] });
    const host = generateHostKeyPair();
    const cert = issueHostCertificate({
      ca,
      caKey: key,
      name: 'node7',
      ip: { address: 0x0a0a0a07, mask: 0xfffffc00 },
      groups: ['psyopsOS', 'extra&<odd>'],
      publicKey: host.publicKey,
      now: t,
    });
    writeFileSync(join(dir, 'i-ca.crt'), encodeCertificatePem(ca));
    writeFileSync(join(dir, 'i-host.crt'), encodeCertificatePem(cert));
    const verify = await nebulaCert(['verify', '-ca', 'i-ca.crt', '-crt', 'i-host.crt']);
    expect(verify.stderr).toBe('');
    expect(verify.exitCode).toBe(0);
    const printed = await nebulaCert(['print', '-json', '-path', 'i-host.crt']);
    expect(printed.exitCode).toBe(0);
    expect(printed.stdout).toBe(formatCertificateJson(cert));
    expect(JSON.parse(printed.stdout)).toMatchObject({
      fingerprint: certificateFingerprint(cert),
      details: {
        name: 'node7',
        ips: ['10.10.10.7/22'],
        groups: ['psyopsOS', 'extra&<odd>'],
        notAfter: new Date((t + 86400 - 1) * 1000).toISOString().replace('.000Z', 'Z'),
      },
    });
    const caPrinted = await nebulaCert(['print', '-json', '-path', 'i-ca.crt']);
    expect(caPrinted.stdout).toBe(formatCertificateJson(ca));
  });

  it('nebula-cert signs with a CA key psyops wrote', async () => {
    const t = now();
    const { cert: ca, key } = createCa({ name: 'psyops-made CA', durationSeconds: 3600, now: t });
    writeFileSync(join(dir, 'p-ca.crt'), encodeCertificatePem(ca));
    writeFileSync(join(dir, 'p-ca.key'), encodeCaPrivateKey(key.secretKey), { mode: 0o600 });
    const signed = await nebulaCert([
      'sign',
      '-ca-crt',
      'p-ca.crt',
      '-ca-key',
      'p-ca.key',
      '-name',
      'n1',
      '-ip',
      '10.10.10.1/22',
      '-out-crt',
      'p-n1.crt',
      '-out-key',
      'p-n1.key',
    ]);
    expect(signed.stderr).toBe('');
    const cert = parseCertificatePem(readFileSync(join(dir, 'p-n1.crt'), 'utf8'));
    expect(verifyCertificate(cert, [ca], now()).details.name).toBe('psyops-made CA');
  });

  it('reads and verifies certificates nebula-cert made from scratch, including -in-pub and subnets', async () => {
    expect(
      (
        await nebulaCert([
          'ca',
          '-name',
          'nebula CA',
          '-duration',
          '2h',
          '-groups',
          'psyopsOS,clients',
          '-ips',
          '10.10.8.0/22',
          '-subnets',
          '192.168.0.0/16',
          '-out-crt',
          'n-ca.crt',
          '-out-key',
          'n-ca.key',
        ])
      ).exitCode,
    ).toBe(0);
    const host = generateHostKeyPair();
    writeFileSync(join(dir, 'n-host.pub'), encodeHostPublicKey(host.publicKey));
    const signed = await nebulaCert([
      'sign',
      '-ca-crt',
      'n-ca.crt',
      '-ca-key',
      'n-ca.key',
      '-name',
      'phone',
      '-ip',
      '10.10.9.3/22',
      '-groups',
      'clients',
      '-subnets',
      '192.168.7.77/24',
      '-in-pub',
      'n-host.pub',
      '-out-crt',
      'n-host.crt',
    ]);
    expect(signed.stderr).toBe('');
    const caText = readFileSync(join(dir, 'n-ca.crt'), 'utf8');
    const certText = readFileSync(join(dir, 'n-host.crt'), 'utf8');
    const cert = parseCertificatePem(certText);
    expect(encodeCertificatePem(cert)).toBe(certText);
    expect(verifyCertificate(cert, parseCaPool(caText, now()), now()).details.name).toBe('nebula CA');
    expect(Buffer.from(cert.details.publicKey)).toEqual(Buffer.from(host.publicKey));
    const printed = await nebulaCert(['print', '-json', '-path', 'n-host.crt']);
    expect(printed.stdout).toBe(formatCertificateJson(cert));
    expect(certificateToJson(cert).details.subnets).toEqual(['192.168.7.0/24']);
    // The CA constrains groups: psyops refuses what nebula-cert refuses.
    const caKey = parseCaPrivateKey(readFileSync(join(dir, 'n-ca.key'), 'utf8'));
    const issue = (groups: string[], ip: number, mask = 0xfffffc00) =>
      issueHostCertificate({ ca: parseCertificatePem(caText), caKey, name: 'x', ip: { address: ip, mask }, groups, publicKey: host.publicKey, now: now() });
    expect(() => issue(['lighthouses'], 0x0a0a0a01)).toThrow(CaConstraintError);
    expect(() => issue(['psyopsOS'], 0x0a0b0a01)).toThrow(/outside the limitations of the signing ca: 10\.11\.10\.1\/22/);
    expect(() => issue(['psyopsOS'], 0x0a0a0a04, 0xffff0000)).toThrow(CaConstraintError);
  });
});

describe('bad certificates and keys', () => {
  const t = now();
  const first = createCa({ name: 'first', durationSeconds: 7200, now: t });
  const second = createCa({ name: 'second', durationSeconds: 7200, now: t });
  const host = generateHostKeyPair();
  const issue = (options: Partial<Parameters<typeof issueHostCertificate>[0]> = {}) =>
    issueHostCertificate({
      ca: first.cert,
      caKey: first.key,
      name: 'h',
      ip: { address: 0x0a0a0a01, mask: 0xfffffc00 },
      groups: ['psyopsOS'],
      publicKey: host.publicKey,
      now: t,
      ...options,
    });

  it('a certificate from another CA is refused, by psyops and by nebula-cert', async () => {
    const cert = issue();
    expect(() => verifyCertificate(cert, [second.cert], now())).toThrow(UnknownIssuerError);
    writeFileSync(join(dir, 'b-second.crt'), encodeCertificatePem(second.cert));
    writeFileSync(join(dir, 'b-host.crt'), encodeCertificatePem(cert));
    const result = await nebulaCert(['verify', '-ca', 'b-second.crt', '-crt', 'b-host.crt']);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('could not find ca for the certificate');
  });

  it('a CA key that does not belong to the CA certificate is refused', () => {
    expect(() => issue({ caKey: second.key })).toThrow(CaKeyMismatchError);
  });

  it('an expired CA signs nothing and verifies nothing', () => {
    const old = createCa({ name: 'old', durationSeconds: 60, now: t - 3600 });
    expect(() => assertCaUsable(old.cert, old.key, t)).toThrow(CaExpiredError);
    expect(() =>
      issueHostCertificate({
        ca: old.cert,
        caKey: old.key,
        name: 'h',
        ip: { address: 0x0a0a0a01, mask: 0xfffffc00 },
        groups: [],
        publicKey: host.publicKey,
        now: t,
      }),
    ).toThrow(CaExpiredError);
    expect(() => parseCaPool(encodeCertificatePem(old.cert), t)).toThrow(CaExpiredError);
  });

  it('a duration past the CA expiry is refused; no duration ends one second before the CA', () => {
    expect(() => issue({ durationSeconds: 7201 })).toThrow(DurationError);
    expect(issue().details.notAfter).toBe(first.cert.details.notAfter - 1);
    expect(issue({ durationSeconds: 7200 }).details.notAfter).toBe(first.cert.details.notAfter);
  });

  it('an expired host certificate and a tampered one are refused', () => {
    const cert = issue({ durationSeconds: 10 });
    expect(() => verifyCertificate(cert, [first.cert], t + 20)).toThrow(CertificateExpiredError);
    const tampered = { ...cert, details: { ...cert.details, groups: ['clients'] } };
    expect(() => verifyCertificate(tampered, [first.cert], t + 1)).toThrow(CertificateSignatureError);
  });

  it('a host certificate given as CA is refused; a CA given as host certificate has no issuer', () => {
    expect(() => parseCaPool(encodeCertificatePem(issue()), t)).toThrow(InvalidCaError);
    expect(() => verifyCertificate(first.cert, [first.cert], t)).toThrow(/no issuer/);
  });

  it('malformed PEM and protobuf are MALFORMED_CERT errors', () => {
    expect(() => parseCertificatePem('hello')).toThrow(CertificateFormatError);
    expect(() => parseCertificatePem(fixture('node1.key'))).toThrow(/banner/);
    const pem = fixture('node1.crt');
    const raw = decodePemBlocks(pem, 'x')[0]!.bytes;
    const truncated = `-----BEGIN NEBULA CERTIFICATE-----\n${Buffer.from(raw.subarray(0, 40)).toString('base64')}\n-----END NEBULA CERTIFICATE-----\n`;
    expect(() => parseCertificatePem(truncated)).toThrow(CertificateFormatError);
    expect(() => parseCaPrivateKey(fixture('node1.key'))).toThrow(CertificateFormatError);
    expect(() => parseHostPrivateKey(`-----BEGIN NEBULA X25519 PRIVATE KEY-----\nAAAA\n-----END NEBULA X25519 PRIVATE KEY-----\n`)).toThrow(/not 32 bytes/);
  });

  it('parses Go durations', () => {
    expect(parseDuration('876000h')).toBe(876000 * 3600);
    expect(parseDuration('8760h0m0s')).toBe(8760 * 3600);
    expect(parseDuration('1h30m')).toBe(5400);
    for (const bad of ['', '10', '-1h', '0s', '1d', 'h']) expect(() => parseDuration(bad), bad).toThrow(DurationError);
  });
});

describe('node:crypto curve25519 against tweetnacl', () => {
  it('gives the same Ed25519 keys and signatures and X25519 public keys', () => {
    for (let i = 0; i < 50; i++) {
      const { cert, key } = createCa({ name: `ca${i}`, durationSeconds: 60, now: now() });
      const reference = nacl.sign.keyPair.fromSeed(key.secretKey.subarray(0, 32));
      expect(Buffer.from(key.secretKey)).toEqual(Buffer.from(reference.secretKey));
      expect(Buffer.from(cert.signature)).toEqual(Buffer.from(nacl.sign.detached(marshalDetails(cert.details), reference.secretKey)));
      const host = generateHostKeyPair();
      expect(Buffer.from(host.publicKey)).toEqual(Buffer.from(nacl.scalarMult.base(host.privateKey)));
      expect(checkSignature({ ...cert, signature: cert.signature.map((byte, index) => (index === i ? byte ^ 1 : byte)) }, key.publicKey)).toBe(false);
    }
  });
});

// Keep the nebula-cert binary check explicit: a missing binary should fail loudly, not skip.
it('nebula-cert 1.6.1 is installed', () => {
  expect(execFileSync(NEBULA_CERT, ['-version'], { timeout: 10_000 }).toString()).toContain('1.6.1');
});
