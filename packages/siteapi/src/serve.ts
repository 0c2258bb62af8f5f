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
  /** Called once per request, after the response is sent. */
  onRequest?: (entry: { method: string; path: string; status: number }) => void;
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

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<number> => {
    const method = request.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') {
      response.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return 405;
    }
    const urlPath = (request.url ?? '/').split('?')[0]!;
    const file = await resolveFile(urlPath);
    if (!file) {
      const page = await resolveFile('/error.html');
      if (!page) {
        response.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found\n');
        return 404;
      }
      response.writeHead(404, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': page.size });
      if (method === 'HEAD') response.end();
      else createReadStream(page.path).pipe(response);
      return 404;
    }
    const headers: Record<string, string | number> = {
      'Content-Type': contentTypeOf(file.path),
      'Accept-Ranges': 'bytes',
      'Cache-Control': 'no-cache',
    };
    const range = parseRange(request.headers.range, file.size);
    if (range === 'unsatisfiable') {
      response.writeHead(416, { ...headers, 'Content-Range': `bytes */${file.size}` }).end();
      return 416;
    }
    const status = range ? 206 : 200;
    const { start, end } = range ?? { start: 0, end: file.size - 1 };
    if (range) headers['Content-Range'] = `bytes ${start}-${end}/${file.size}`;
    headers['Content-Length'] = file.size === 0 ? 0 : end - start + 1;
    response.writeHead(status, headers);
    if (method === 'HEAD' || file.size === 0) response.end();
    else
      createReadStream(file.path, { start, end })
        .on('error', () => response.destroy())
        .pipe(response);
    return status;
  };

  const server = createServer((request, response) => {
    handle(request, response).then(
      (status) => options.onRequest?.({ method: request.method ?? '', path: request.url ?? '', status }),
      () => {
        if (!response.headersSent) response.writeHead(500).end();
        else response.destroy();
      },
    );
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
