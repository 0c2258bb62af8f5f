import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTlsServer, globalAgent } from 'node:https';
import type { AddressInfo, Server } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FetchLimitError } from '../src/errors.js';
import { TempRootSystem } from '../src/temp-root-system.js';
import { tempDir } from './fixtures.js';

const MIB = 1024 * 1024;
const system = new TempRootSystem({ root: tempDir('fetchroot') });

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

/** A real server on 127.0.0.1, closed after the file; its URL without a trailing slash. */
async function listen(server: Server, scheme: 'http' | 'https' = 'http'): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  afterAll(() => new Promise((resolve) => server.close(resolve)));
  return `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const httpServer = async (handler: Handler) => {
  const server = createServer(handler);
  return { server, url: await listen(server) };
};

/** Writes `chunk` until `total` bytes or the client hangs up, respecting back-pressure; counts what it wrote. */
function stream(response: ServerResponse, chunk: Buffer, total: number, sent: { bytes: number; closed: boolean }): void {
  response.on('close', () => {
    sent.closed = true;
  });
  const pump = () => {
    while (!sent.closed && sent.bytes < total) {
      sent.bytes += chunk.length;
      if (!response.write(chunk)) return void response.once('drain', pump);
    }
    if (!sent.closed) response.end();
  };
  pump();
}

const until = async (condition: () => boolean) => {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
};

describe('RootedSystem.fetch limits, against real servers on 127.0.0.1', () => {
  it('a server that drips one byte a second: rejected at the deadline, naming the URL and the deadline', async () => {
    const { url } = await httpServer((_request, response) => {
      response.writeHead(200, { 'content-length': '100' });
      const drip = setInterval(() => response.write('x'), 1000);
      response.on('close', () => clearInterval(drip));
    });
    const began = Date.now();
    const error = await system.fetch(`${url}/slow.json`, { deadlineMs: 1500, maxBytes: MIB }).catch((e: unknown) => e);
    expect(Date.now() - began).toBeLessThan(3000);
    expect(error).toBeInstanceOf(FetchLimitError);
    expect((error as FetchLimitError).limit).toBe('deadline');
    expect((error as Error).message).toBe(`GET ${url}/slow.json: no complete answer within the deadline of 1500 ms`);
  });

  it('a declared Content-Length over the limit: refused at once, before the body is read', async () => {
    const sent = { bytes: 0, closed: false };
    const { url } = await httpServer((_request, response) => {
      response.writeHead(200, { 'content-length': String(400 * MIB) });
      stream(response, Buffer.alloc(64 * 1024), 400 * MIB, sent);
    });
    const began = Date.now();
    const error = await system.fetch(`${url}/huge.json`, { deadlineMs: 30_000, maxBytes: MIB }).catch((e: unknown) => e);
    expect(Date.now() - began).toBeLessThan(2000);
    expect((error as Error).message).toBe(`GET ${url}/huge.json: Content-Length 419430400 exceeds the limit of 1048576 bytes`);
    await until(() => sent.closed);
    expect(sent.closed).toBe(true);
    // What the kernel's socket buffers took before the hang-up; without the check the client would read all 400 MiB.
    expect(sent.bytes).toBeLessThan(32 * MIB);
  });

  it('a body without Content-Length: aborted as soon as it passes the limit', async () => {
    const sent = { bytes: 0, closed: false };
    const { url } = await httpServer((_request, response) => {
      response.writeHead(200); // chunked: no length announced
      stream(response, Buffer.alloc(64 * 1024), 400 * MIB, sent);
    });
    const error = await system.fetch(`${url}/endless.json`, { deadlineMs: 30_000, maxBytes: MIB }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FetchLimitError);
    expect((error as FetchLimitError).limit).toBe('size');
    expect((error as Error).message).toBe(`GET ${url}/endless.json: the body exceeds the limit of 1048576 bytes`);
    await until(() => sent.closed);
    expect(sent.closed).toBe(true);
    expect(sent.bytes).toBeLessThan(MIB + 32 * MIB);
  });

  it('a body within the limit, and one exactly at it, arrive whole', async () => {
    const { url } = await httpServer((request, response) => response.end(Buffer.alloc(request.url === '/exact' ? MIB : 10, 7)));
    expect(await system.fetch(`${url}/small`, { deadlineMs: 5000, maxBytes: MIB })).toEqual({ status: 200, body: Buffer.alloc(10, 7) });
    expect((await system.fetch(`${url}/exact`, { deadlineMs: 5000, maxBytes: MIB })).body.length).toBe(MIB);
  });

  describe('redirects', () => {
    let other: { url: string; hits: number };
    beforeAll(async () => {
      other = { url: '', hits: 0 };
      other.url = (
        await httpServer((_request, response) => {
          other.hits++;
          response.end('elsewhere');
        })
      ).url;
    });

    it('a same-origin redirect is followed; a chain longer than the limit is refused', async () => {
      const { url } = await httpServer((request, response) => {
        const hop = Number(request.url!.slice('/hop/'.length));
        if (request.url === '/moved') response.writeHead(301, { location: '/nodes/n.json' }).end();
        else if (request.url === '/nodes/n.json') response.end('{"ok":true}');
        else response.writeHead(302, { location: `/hop/${hop + 1}` }).end();
      });
      expect(await system.fetch(`${url}/moved`, { deadlineMs: 5000, maxBytes: MIB })).toEqual({ status: 200, body: Buffer.from('{"ok":true}') });
      const error = await system.fetch(`${url}/hop/0`, { deadlineMs: 5000, maxBytes: MIB, maxRedirects: 2 }).catch((e: unknown) => e);
      expect((error as Error).message).toBe(`GET ${url}/hop/0: more than the limit of 2 redirects`);
    });

    it('a redirect to another origin (another port) is refused and never fetched', async () => {
      const { url } = await httpServer((_request, response) => response.writeHead(302, { location: `${other.url}/nodes/n.json` }).end());
      const error = await system.fetch(`${url}/nodes/n.json`, { deadlineMs: 5000, maxBytes: MIB }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(FetchLimitError);
      expect((error as Error).message).toBe(`GET ${url}/nodes/n.json: redirect to ${other.url} refused (only within ${url})`);
      expect(other.hits).toBe(0);
    });

    it('a redirect from https to http is refused', async () => {
      // A self-signed certificate for 127.0.0.1, trusted by the https agent the fetch uses.
      const dir = tempDir('tls');
      const [key, cert] = [join(dir, 'key.pem'), join(dir, 'cert.pem')];
      await promisify(execFile)('openssl', [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-days',
        '1',
        '-keyout',
        key,
        '-out',
        cert,
      ]);
      const server = createTlsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (request, response) => {
        if (request.url === '/plain') response.end('over tls');
        else response.writeHead(302, { location: `${other.url}/nodes/n.json` }).end();
      });
      const url = await listen(server, 'https');
      const previousCa = globalAgent.options.ca;
      globalAgent.options.ca = readFileSync(cert);
      try {
        expect((await system.fetch(`${url}/plain`, { deadlineMs: 5000, maxBytes: MIB })).body.toString()).toBe('over tls');
        const error = await system.fetch(`${url}/nodes/n.json`, { deadlineMs: 5000, maxBytes: MIB }).catch((e: unknown) => e);
        expect((error as Error).message).toBe(`GET ${url}/nodes/n.json: redirect from https to http refused`);
        expect(other.hits).toBe(0);
      } finally {
        globalAgent.options.ca = previousCa;
      }
    });
  });
});
