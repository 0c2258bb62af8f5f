import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveSite, type SiteServer } from '../src/index.ts';
import { tempDir } from './fixtures.ts';

const dir = tempDir('serve');
const root = join(dir, 'site');
let server: SiteServer;

/** A raw HTTP request: fetch() would normalize `..` away before sending it. */
function raw(method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: server.port, method, path, headers, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

beforeAll(async () => {
  mkdirSync(join(root, 'os'), { recursive: true });
  writeFileSync(join(root, 'index.html'), '<h1>site</h1>\n');
  writeFileSync(join(root, 'error.html'), '<h1>Not found</h1>\n');
  writeFileSync(join(root, 'index.json'), '{"a":1}\n');
  writeFileSync(join(root, 'os', 'image.iso'), Buffer.from('0123456789'));
  writeFileSync(join(root, 'os', 'image.iso.minisig'), 'sig\n');
  writeFileSync(join(dir, 'secret.txt'), 'outside the root\n');
  symlinkSync(join(dir, 'secret.txt'), join(root, 'escape.txt'));
  server = await serveSite({ root });
});

afterAll(() => server?.close());

describe('serveSite', () => {
  it('serves files with their types, and index.html for folders', async () => {
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/`);
    const json = await raw('GET', '/index.json');
    expect(json).toMatchObject({ status: 200, headers: { 'content-type': 'application/json', 'content-length': '8', 'accept-ranges': 'bytes' } });
    expect(json.body.toString()).toBe('{"a":1}\n');
    expect((await raw('GET', '/os/image.iso')).headers['content-type']).toBe('application/x-iso9660-image');
    expect((await raw('GET', '/os/image.iso.minisig')).headers['content-type']).toBe('text/plain; charset=utf-8');
    const home = await raw('GET', '/?x=1');
    expect(home.status).toBe(200);
    expect(home.body.toString()).toBe('<h1>site</h1>\n');
  });

  it('answers HEAD with headers and no body', async () => {
    const head = await raw('HEAD', '/os/image.iso');
    expect(head).toMatchObject({ status: 200, headers: { 'content-length': '10' } });
    expect(head.body.length).toBe(0);
  });

  it('serves byte ranges, suffix ranges, and 416 past the end', async () => {
    const part = await raw('GET', '/os/image.iso', { Range: 'bytes=2-5' });
    expect(part).toMatchObject({ status: 206, headers: { 'content-range': 'bytes 2-5/10', 'content-length': '4' } });
    expect(part.body.toString()).toBe('2345');
    expect((await raw('GET', '/os/image.iso', { Range: 'bytes=7-' })).body.toString()).toBe('789');
    expect((await raw('GET', '/os/image.iso', { Range: 'bytes=-3' })).body.toString()).toBe('789');
    expect((await raw('GET', '/os/image.iso', { Range: 'bytes=8-100' })).body.toString()).toBe('89');
    const beyond = await raw('GET', '/os/image.iso', { Range: 'bytes=10-' });
    expect(beyond).toMatchObject({ status: 416, headers: { 'content-range': 'bytes */10' } });
    expect((await raw('GET', '/os/image.iso', { Range: 'bytes=0-1,4-5' })).status).toBe(200);
  });

  it('answers 404 with error.html', async () => {
    const missing = await raw('GET', '/nodes/nobody.json');
    expect(missing.status).toBe(404);
    expect(missing.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(missing.body.toString()).toBe('<h1>Not found</h1>\n');
  });

  it('never leaves the root: .., encoded slashes and dots, backslashes, symlinks out', async () => {
    for (const path of [
      '/../secret.txt',
      '/os/../../secret.txt',
      '/%2e%2e/secret.txt',
      '/os%2f..%2f..%2fsecret.txt',
      '/..%5csecret.txt',
      '/escape.txt',
      '/%00',
      '/%E0%A4%A',
    ]) {
      const res = await raw('GET', path);
      expect(res.status, path).toBe(404);
      expect(res.body.toString(), path).not.toContain('outside the root');
    }
  });

  it('refuses other methods', async () => {
    expect((await raw('POST', '/index.json')).status).toBe(405);
    expect((await raw('PUT', '/index.json')).headers.allow).toBe('GET, HEAD');
  });

  it('reports each request once its response is sent: method, path, status, body bytes and client', async () => {
    const entries: Parameters<NonNullable<Parameters<typeof serveSite>[0]['onRequest']>>[0][] = [];
    const logged = await serveSite({ root, onRequest: (entry) => entries.push(entry) });
    const previous = server;
    server = logged;
    try {
      await raw('GET', '/os/image.iso');
      await raw('GET', '/os/image.iso', { Range: 'bytes=2-5' });
      await raw('HEAD', '/index.json');
      await raw('GET', '/nodes/nobody.json?v=1');
      await raw('POST', '/index.json');
      for (let i = 0; i < 100 && entries.length < 5; i++) await new Promise((r) => setTimeout(r, 10));
    } finally {
      server = previous;
      await logged.close();
    }
    const client = { remoteAddress: '127.0.0.1' };
    expect(entries).toEqual([
      { method: 'GET', path: '/os/image.iso', status: 200, bytes: 10, ...client },
      { method: 'GET', path: '/os/image.iso', status: 206, bytes: 4, ...client },
      { method: 'HEAD', path: '/index.json', status: 200, bytes: 0, ...client },
      { method: 'GET', path: '/nodes/nobody.json?v=1', status: 404, bytes: '<h1>Not found</h1>\n'.length, ...client },
      { method: 'POST', path: '/index.json', status: 405, bytes: 'method not allowed\n'.length, ...client },
    ]);
  });

  it('refuses a root that does not exist', async () => {
    await expect(serveSite({ root: join(dir, 'nope') })).rejects.toMatchObject({ code: 'FILE_NOT_FOUND' });
  });
});
