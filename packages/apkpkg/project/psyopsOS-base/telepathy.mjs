#!/usr/bin/env node
// telepathy: the node's read-only status over HTTP.
//   GET /            JSON: hostname, uptime, load, memory, plugin names
//   GET /hostname    the hostname, as text
//   GET /plugins/X   stdout of the executable /etc/telepathy/plugins.d/X (5 s limit)
//   GET /status      this boot's /etc/psyopsOS/status.json, as postboot wrote it (no secrets in it)
// Only GET and HEAD; nothing here changes the node.
import { execFile } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { hostname, loadavg, totalmem, freemem, uptime } from 'node:os';
import { join } from 'node:path';

const PORT = Number(process.env.TELEPATHY_PORT ?? 7453);
const HOST = process.env.TELEPATHY_HOST ?? '0.0.0.0';
const PLUGINS = process.env.TELEPATHY_PLUGINS ?? '/etc/telepathy/plugins.d';
const STATUS = process.env.TELEPATHY_STATUS ?? '/etc/psyopsOS/status.json';
const PLUGIN_NAME = /^[A-Za-z0-9_-]+$/;

function plugins() {
  try {
    return readdirSync(PLUGINS)
      .filter((name) => PLUGIN_NAME.test(name) && (statSync(join(PLUGINS, name)).mode & 0o111) !== 0)
      .sort();
  } catch {
    return [];
  }
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

const server = createServer((req, res) => {
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'read-only\n');
  const path = new URL(req.url ?? '/', 'http://telepathy').pathname;
  if (path === '/') {
    const status = { hostname: hostname(), uptime: Math.floor(uptime()), load: loadavg(), memory: { total: totalmem(), free: freemem() }, plugins: plugins() };
    return send(res, 200, 'application/json', `${JSON.stringify(status)}\n`);
  }
  if (path === '/hostname') return send(res, 200, 'text/plain', `${hostname()}\n`);
  if (path === '/status') {
    readFile(STATUS).then(
      (body) => send(res, 200, 'application/json', body),
      (error) => {
        const missing = error.code === 'ENOENT';
        const message = missing ? `no status yet: ${STATUS} does not exist (postboot writes it)` : `cannot read ${STATUS}: ${error.code ?? error.message}`;
        send(res, missing ? 404 : 500, 'application/json', `${JSON.stringify({ error: message })}\n`);
      },
    );
    return;
  }
  const match = /^\/plugins\/([^/]+)$/.exec(path);
  if (match && plugins().includes(match[1])) {
    execFile(join(PLUGINS, match[1]), [], { timeout: 5000, maxBuffer: 1 << 20 }, (error, stdout) => {
      if (error) send(res, 500, 'text/plain', `plugin ${match[1]} failed\n`);
      else send(res, 200, 'text/plain', stdout);
    });
    return;
  }
  send(res, 404, 'text/plain', 'not found\n');
});

server.listen(PORT, HOST, () => {
  const address = server.address();
  process.stdout.write(`telepathy listening on ${address.address}:${address.port}\n`);
});
