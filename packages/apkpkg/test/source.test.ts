import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApkFetchError, loadKeysDir, readIndex, readPackage, readSource } from '../src/index.ts';
import { FIXTURES, HELLO, INDEX } from './helpers.ts';

let server: Server;
let base: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === '/x86_64/APKINDEX.tar.gz') res.end(INDEX);
    else if (req.url === '/x86_64/psyops-hello-1.0.0-r0.apk') res.end(HELLO);
    else {
      res.statusCode = 404;
      res.end('not found');
    }
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((done) => server.close(() => done())));

describe('readSource', () => {
  it('reads an index and a package over HTTP and verifies them', async () => {
    const keys = await loadKeysDir(FIXTURES);
    const index = readIndex(await readSource(`${base}/x86_64/APKINDEX.tar.gz`), { keys });
    expect(index.entries.map((e) => e.name)).toEqual(['psyops-dep', 'psyops-hello']);
    expect(readPackage(await readSource(`${base}/x86_64/psyops-hello-1.0.0-r0.apk`), { keys }).trustedBy).toBe('psyops-test-65000000.rsa.pub');
  });

  it('fails with a typed error on HTTP errors, refused connections and oversize bodies', async () => {
    await expect(readSource(`${base}/x86_64/missing.apk`)).rejects.toThrow(/HTTP 404/);
    await expect(readSource(`${base}/x86_64/missing.apk`)).rejects.toBeInstanceOf(ApkFetchError);
    await expect(readSource('http://127.0.0.1:1/x', { timeoutMs: 5000 })).rejects.toThrow(ApkFetchError);
    await expect(readSource(`${base}/x86_64/psyops-hello-1.0.0-r0.apk`, { maxBytes: 100 })).rejects.toThrow(/larger than 100 bytes/);
  });

  it('reads local files with FILE_NOT_FOUND for missing ones', async () => {
    await expect(readSource('/nonexistent/APKINDEX.tar.gz')).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
  });
});
