import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { constants, deflateRawSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ApkSignatureError, ApkTooLargeError, ApkUntrustedError, checkAgainstIndex, loadKeysDir, readIndex, readPackage } from '../src/index.ts';
import { FIXTURES, HELLO, INDEX, members } from './helpers.ts';

const keys = await loadKeysDir(FIXTURES);
const MIB = 1 << 20;
/** Larger than any bomb here: with it, only the order of the checks keeps the bomb from inflating. */
const NO_LIMIT = 8 * 1024 * MIB;

/**
 * 1 MiB of zeros as raw deflate ending on a byte boundary (sync flush); it refers only to its
 * own bytes, so copies of it back to back are valid deflate data for as many MiB of zeros.
 */
const ZEROS_SEGMENT = deflateRawSync(Buffer.alloc(MIB), { level: 9, finishFlush: constants.Z_SYNC_FLUSH });

/**
 * A gzip member inflating to `mib` MiB of zeros, built from copies of one segment so the test
 * never holds the inflated bytes. Its trailer is zeros: every reader must stop before reaching it.
 */
function gzipBomb(mib: number): Buffer {
  const header = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3]);
  const emptyFinalBlock = Buffer.from([0x03, 0x00]);
  return Buffer.concat([header, ...new Array<Buffer>(mib).fill(ZEROS_SEGMENT), emptyFinalBlock, Buffer.alloc(8)]);
}

/** 1 GiB of zeros in about 1 MiB. */
const BOMB = gzipBomb(1024);

function peakRss(): number {
  const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return Number(match?.[1]) * 1024;
}

/** How much the process's peak resident memory grew while `work` ran, and how long it took. */
function measure(work: () => void): { rssGrowth: number; ms: number } {
  writeFileSync('/proc/self/clear_refs', '5'); // resets the peak (VmHWM) to the current RSS
  const before = peakRss();
  const started = performance.now();
  work();
  return { rssGrowth: peakRss() - before, ms: performance.now() - started };
}

describe('gzip bombs', () => {
  it('is a 1 MiB file that inflates to 1 GiB', () => {
    expect(BOMB.length).toBeLessThan(1.5 * MIB);
    expect(ZEROS_SEGMENT.length * 1024).toBeGreaterThan(MIB / 2);
  });

  it('refuses an index stream that inflates beyond maxIndexBytes, quickly and in bounded memory', () => {
    const { rssGrowth, ms } = measure(() => {
      expect(() => readIndex(BOMB, { name: 'bomb/APKINDEX.tar.gz' })).toThrow(
        new ApkTooLargeError('bomb/APKINDEX.tar.gz: index stream inflates to more than 64 MiB, the limit (maxIndexBytes)', 64 * MIB),
      );
    });
    expect(rssGrowth).toBeLessThan(200 * MIB);
    expect(ms).toBeLessThan(5000);
    expect(() => readIndex(INDEX, { keys, maxIndexBytes: 1024 })).toThrow(/index stream inflates to more than 1024 bytes, the limit \(maxIndexBytes\)/);
  });

  it('checks the signature on the compressed index stream before inflating any of it', () => {
    const [signature] = members(INDEX);
    const forged = Buffer.concat([signature!.compressed, BOMB]);
    const { rssGrowth, ms } = measure(() => {
      expect(() => readIndex(forged, { keys, maxIndexBytes: NO_LIMIT })).toThrow(ApkSignatureError);
      // allowUntrusted does not excuse a wrong signature by a known key.
      expect(() => readIndex(forged, { keys, allowUntrusted: true, maxIndexBytes: NO_LIMIT })).toThrow(ApkSignatureError);
      // Unsigned: finding out costs at most 1 MiB of the first stream.
      expect(() => readIndex(BOMB, { keys, maxIndexBytes: NO_LIMIT })).toThrow(ApkUntrustedError);
    });
    expect(rssGrowth).toBeLessThan(200 * MIB);
    expect(ms).toBeLessThan(2000);
  });

  it('refuses a control stream beyond maxControlBytes', () => {
    const [signature] = members(HELLO);
    expect(() => readPackage(Buffer.concat([signature!.compressed, BOMB]), { keys, name: 'bomb.apk' })).toThrow(
      'bomb.apk: control stream inflates to more than 4 MiB, the limit (maxControlBytes)',
    );
    expect(() => readPackage(BOMB, { name: 'bomb.apk' })).toThrow('bomb.apk: first stream inflates to more than 4 MiB, the limit (maxControlBytes)');
  });

  it('checks signature, identity and datahash before inflating the data stream', () => {
    const [signature, control] = members(HELLO);
    const swapped = Buffer.concat([signature!.compressed, control!.compressed, BOMB]);
    const { rssGrowth } = measure(() => {
      expect(() => readPackage(swapped, { keys, maxDataBytes: NO_LIMIT })).toThrow(/data stream does not match datahash/);
      const { bytes: unsigned, identity } = unsignedWithData(BOMB);
      const entry = { ...readIndex(INDEX).entries[1]!, identity, size: unsigned.length };
      expect(() => checkAgainstIndex(unsigned, { ...entry, identity: 'Q1AAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' }, { maxDataBytes: NO_LIMIT })).toThrow(
        /package checksum .* does not match the index/,
      );
      expect(() => checkAgainstIndex(unsigned, { ...entry, size: 1462 }, { maxDataBytes: NO_LIMIT })).toThrow(/size \d+ does not match the index \(1462\)/);
    });
    expect(rssGrowth).toBeLessThan(200 * MIB);
  });

  it('refuses a data stream beyond twice the installed size plus 64 MiB, or maxDataBytes', () => {
    const { rssGrowth } = measure(() => {
      expect(() => readPackage(unsignedWithData(BOMB).bytes, { name: 'bomb.apk' })).toThrow(
        `bomb.apk: data stream inflates to more than ${2 * 28672 + 64 * MIB} bytes, the limit (maxDataBytes)`,
      );
    });
    expect(rssGrowth).toBeLessThan(200 * MIB);
    expect(() => readPackage(HELLO, { keys, maxDataBytes: 1000 })).toThrow(ApkTooLargeError);
    expect(readPackage(HELLO, { keys, maxDataBytes: 64 * 1024 }).info.pkgname).toBe('psyops-hello');
  });
});

/** psyops-hello's control stream, unsigned, its datahash rewritten to match `data`; and the package's identity. */
function unsignedWithData(data: Buffer): { bytes: Buffer; identity: string } {
  const control = Buffer.from(members(HELLO)[1]!.data);
  const hashAt = control.indexOf('datahash = ') + 'datahash = '.length;
  control.write(createHash('sha256').update(data).digest('hex'), hashAt, 'latin1');
  const controlGz = gzipSync(control);
  return { bytes: Buffer.concat([controlGz, data]), identity: `Q1${createHash('sha1').update(controlGz).digest('base64')}` };
}
