#!/usr/bin/env node
// telepathy: the node's read-only status over HTTP.
//   GET /            JSON: hostname, uptime, load, memory, plugin names
//   GET /hostname    the hostname, as text
//   GET /plugins/X   stdout of the executable /etc/telepathy/plugins.d/X (5 s limit)
// Only GET and HEAD; nothing here changes the node.
import { execFile } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { hostname, loadavg, totalmem, freemem, uptime } from 'node:os';
import { join } from 'node:path';

const PORT = Number(process.env.TELEPATHY_PORT ?? 7453);
const HOST = process.env.TELEPATHY_HOST ?? '0.0.0.0';
const PLUGINS = process.env.TELEPATHY_PLUGINS ?? '/etc/telepathy/plugins.d';
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
