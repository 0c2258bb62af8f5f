import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, sep } from 'node:path';
import { fileAccessError } from '@psyops/core';
import { contentTypeOf } from './content.js';
import { SiteInputError } from './errors.js';

export interface ServeOptions {
  /** The site folder. */
  root: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: any free port. */
  port?: number;
  /** Called once per request, once the response is sent (or the connection closed before that). */
  onRequest?: (entry: RequestLogEntry) => void;
}

export interface RequestLogEntry {
  method: string;
  /** As requested, query included. */
  path: string;
  status: number;
  /** Body bytes sent (0 for HEAD; fewer than the file's size when the client went away). */
  bytes: number;
  /** The client's address ('' when unknown). */
  remoteAddress: string;
}

export interface SiteServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Parses a single `bytes=` range against `size`; null when absent or not a single range; 'unsatisfiable' past the end. */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | null {
  if (header === undefined) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return null; // malformed or multi-range: serve the whole file, as RFC 9110 allows
  let start: number;
  let end: number;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0) return 'unsatisfiable';
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
    if (end < start && match[2] !== '') return null;
  }
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/**
 * A static server for a built site: GET and HEAD, single Range requests, Content-Type by
 * extension, `error.html` with status 404, and no way out of the root (`..`, encoded
 * slashes and symlinks pointing outside are all refused).
 */
export async function serveSite(options: ServeOptions): Promise<SiteServer> {
  let root: string;
  try {
    root = await realpath(options.root);
    if (!(await stat(root)).isDirectory()) throw new SiteInputError(`${options.root} is not a folder`);
  } catch (error) {
    if (error instanceof SiteInputError) throw error;
    throw fileAccessError(error, options.root, 'site folder');
  }

  /** The real path of the file a URL path names inside root, or null. */
  const resolveFile = async (urlPath: string): Promise<{ path: string; size: number } | null> => {
    let decoded: string;
    try {
      decoded = decodeURIComponent(urlPath);
    } catch {
      return null;
    }
    if (decoded.includes('\0') || decoded.includes('\\')) return null;
    const segments = decoded.split('/').filter((s) => s !== '' && s !== '.');
    if (segments.some((s) => s === '..')) return null;
    let candidate = join(root, ...segments);
    try {
      let info = await stat(candidate);
      if (info.isDirectory()) {
        candidate = join(candidate, 'index.html');
        info = await stat(candidate);
      }
      const real = await realpath(candidate);
      if (!real.startsWith(root + sep) || !info.isFile()) return null;
      return { path: real, size: info.size };
    } catch {
      return null;
    }
  };

  /** Body bytes written to each response, for the request log. */
  const sent = new WeakMap<ServerResponse, number>();
  const count = (response: ServerResponse, bytes: number) => sent.set(response, (sent.get(response) ?? 0) + bytes);
  const stream = (response: ServerResponse, path: string, range?: { start: number; end: number }) =>
    createReadStream(path, range)
      .on('data', (chunk) => count(response, chunk.length))
      .on('error', () => response.destroy())
      .pipe(response);
  const endWith = (response: ServerResponse, text: string) => {
    count(response, Buffer.byteLength(text));
    response.end(text);
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const method = request.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') {
      endWith(response.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' }), 'method not allowed\n');
      return;
    }
    const urlPath = (request.url ?? '/').split('?')[0]!;
    const file = await resolveFile(urlPath);
    if (!file) {
      const page = await resolveFile('/error.html');
      if (!page) {
        endWith(response.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }), 'not found\n');
        return;
      }
      response.writeHead(404, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': page.size });
      if (method === 'HEAD') response.end();
      else stream(response, page.path);
      return;
    }
    const headers: Record<string, string | number> = {
      'Content-Type': contentTypeOf(file.path),
      'Accept-Ranges': 'bytes',
      'Cache-Control': 'no-cache',
    };
    const range = parseRange(request.headers.range, file.size);
    if (range === 'unsatisfiable') {
      response.writeHead(416, { ...headers, 'Content-Range': `bytes */${file.size}` }).end();
      return;
    }
    const status = range ? 206 : 200;
    const { start, end } = range ?? { start: 0, end: file.size - 1 };
    if (range) headers['Content-Range'] = `bytes ${start}-${end}/${file.size}`;
    headers['Content-Length'] = file.size === 0 ? 0 : end - start + 1;
    response.writeHead(status, headers);
    if (method === 'HEAD' || file.size === 0) response.end();
    else stream(response, file.path, { start, end });
  };

  const server = createServer((request, response) => {
    // Listening from the start: a short response can be closed before handle() has resolved.
    response.once('close', () =>
      options.onRequest?.({
        method: request.method ?? '',
        path: request.url ?? '',
        status: response.statusCode,
        bytes: sent.get(response) ?? 0,
        remoteAddress: request.socket.remoteAddress ?? '',
      }),
    );
    handle(request, response).catch(() => {
      if (!response.headersSent) response.writeHead(500).end();
      else response.destroy();
    });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${port}/`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
