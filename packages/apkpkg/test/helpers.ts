import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll } from 'vitest';
import { splitGzipMembers } from '../src/gzip.ts';

export const FIXTURES = join(import.meta.dirname, 'fixtures');
export const VECTOR_KEY = join(FIXTURES, 'psyops-test-65000000.rsa');
export const VECTOR_KEY_NAME = 'psyops-test-65000000.rsa.pub';
export const HELLO = readFileSync(join(FIXTURES, 'psyops-hello-1.0.0-r0.apk'));
export const DEP = readFileSync(join(FIXTURES, 'psyops-dep-2.1_rc1-r3.apk'));
export const INDEX = readFileSync(join(FIXTURES, 'APKINDEX.tar.gz'));
export const EPOCH = 1700000000;

const made: string[] = [];
// Registered once per test file at collection time (a hook added from inside a test never runs).
afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A temporary directory removed after the test file. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `apkpkg-${prefix}-`));
  made.push(dir);
  return dir;
}

/** Compressed bytes and inflated tar of each gzip member. */
export function members(file: Uint8Array): { compressed: Buffer; data: Buffer }[] {
  return splitGzipMembers(file);
}

export function inflate(member: Buffer): Buffer {
  return gunzipSync(member);
}
