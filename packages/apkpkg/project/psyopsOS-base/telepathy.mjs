#!/usr/bin/env node
// telepathy: the node's read-only status over HTTP.
//   GET /            JSON: hostname, uptime, load, memory, plugin names
//   GET /hostname    the hostname, as text
//   GET /plugins/X   stdout of the executable /etc/telepathy/plugins.d/X (5 s limit), run at most
//                    once per window: requests within the window of the last run get its output
//   GET /status      this boot's /etc/psyopsOS/status.json, as postboot wrote it (no secrets in it)
// Only GET and HEAD; nothing here changes the node. It runs as the unprivileged user telepathy
// (the init script's command_user), and so do its plugins.
//
// Environment (the init script sets the first two from /etc/conf.d/telepathy):
//   TELEPATHY_LISTEN   addresses to listen on, separated by spaces; "psynet" is the IPv4 address of
//                      the Nebula tun device (default "127.0.0.1 psynet"; TELEPATHY_HOST, one
//                      address, is read when this is unset)
//   TELEPATHY_READY    a file that gets this process's pid once every address that exists is bound
//   TELEPATHY_PORT (7453), TELEPATHY_PLUGINS, TELEPATHY_STATUS, TELEPATHY_PLUGIN_WINDOW_MS (5000),
//   TELEPATHY_PSYNET_INTERFACE (nebula1)
import { execFile } from 'node:child_process';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { hostname, loadavg, networkInterfaces, totalmem, freemem, uptime } from 'node:os';
import { join } from 'node:path';

const env = process.env;
const PORT = Number(env.TELEPATHY_PORT ?? 7453);
const LISTEN = (env.TELEPATHY_LISTEN ?? env.TELEPATHY_HOST ?? '127.0.0.1 psynet').split(/[\s,]+/).filter((address) => address !== '');
const READY = env.TELEPATHY_READY ?? '';
const PLUGINS = env.TELEPATHY_PLUGINS ?? '/etc/telepathy/plugins.d';
const STATUS = env.TELEPATHY_STATUS ?? '/etc/psyopsOS/status.json';
const PLUGIN_WINDOW_MS = Number(env.TELEPATHY_PLUGIN_WINDOW_MS ?? 5000);
// The tun device psynet's Nebula configs name (tun.dev in @psyops/psynet's nebula-defaults).
const PSYNET_INTERFACE = env.TELEPATHY_PSYNET_INTERFACE ?? 'nebula1';
// How often to look for the psynet address while it is missing (Nebula may come up after telepathy).
const PSYNET_POLL_MS = 2000;
const PLUGIN_NAME = /^[A-Za-z0-9_-]+$/;

const log = (line) => process.stdout.write(`${line}\n`);
function fail(message) {
  process.stderr.write(`telepathy: ${message}\n`);
  process.exit(1);
}

// 0: a free port of the system's choice (tests).
if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) fail(`TELEPATHY_PORT must be a port 0-65535, not "${env.TELEPATHY_PORT}"`);
if (!Number.isFinite(PLUGIN_WINDOW_MS) || PLUGIN_WINDOW_MS < 0)
  fail(`TELEPATHY_PLUGIN_WINDOW_MS must be a number of ms, not "${env.TELEPATHY_PLUGIN_WINDOW_MS}"`);

function plugins() {
  try {
    return readdirSync(PLUGINS)
      .filter((name) => PLUGIN_NAME.test(name) && (statSync(join(PLUGINS, name)).mode & 0o111) !== 0)
      .sort();
  } catch {
    return [];
  }
}

/** Plugin name → its last run: a burst of requests shares one run, so it cannot start a process each. */
const runs = new Map();
function runPlugin(name) {
  const last = runs.get(name);
  if (last && (last.pending || Date.now() - last.startedAt < PLUGIN_WINDOW_MS)) return last.result;
  const run = { startedAt: Date.now(), pending: true, result: undefined };
  run.result = new Promise((resolve) => {
    execFile(join(PLUGINS, name), [], { timeout: 5000, maxBuffer: 1 << 20 }, (error, stdout) => {
      run.pending = false;
      resolve(error ? undefined : stdout);
    });
  });
  runs.set(name, run);
  return run.result;
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

function handle(req, res) {
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
    runPlugin(match[1]).then((stdout) => {
      if (stdout === undefined) send(res, 500, 'text/plain', `plugin ${match[1]} failed\n`);
      else send(res, 200, 'text/plain', stdout);
    });
    return;
  }
  send(res, 404, 'text/plain', 'not found\n');
}

/** Listens on one address; resolves with the server, or rejects with the listen error. */
function listen(address) {
  return new Promise((resolve, reject) => {
    const server = createServer(handle);
    server.once('error', reject);
    server.listen(PORT, address, () => {
      server.off('error', reject);
      const bound = server.address();
      log(`telepathy listening on ${bound.address}:${bound.port}`);
      resolve(server);
    });
  });
}

/** The IPv4 address of the psynet tun device, or undefined while it has none. */
function psynetAddress() {
  return networkInterfaces()[PSYNET_INTERFACE]?.find((entry) => entry.family === 'IPv4')?.address;
}

const fixed = LISTEN.filter((address) => address !== 'psynet');
try {
  for (const address of fixed) await listen(address);
} catch (error) {
  fail(`cannot listen on ${error.address ?? '?'}:${PORT}: ${error.code ?? error.message}`);
}

if (LISTEN.includes('psynet')) {
  let psynet; // { address, server } once bound
  let lastProblem = '';
  const bindPsynet = async () => {
    const address = psynetAddress();
    if (address === undefined || address === psynet?.address) {
      if (address === undefined && psynet === undefined && lastProblem === '') {
        lastProblem = 'missing';
        log(`telepathy: ${PSYNET_INTERFACE} has no IPv4 address yet; listening on it once it has (looking every ${PSYNET_POLL_MS / 1000} s)`);
      }
      return;
    }
    try {
      const server = await listen(address);
      // Nebula came back with another address: the old one is gone from the node.
      psynet?.server.close();
      psynet = { address, server };
      lastProblem = '';
    } catch (error) {
      const problem = `cannot listen on ${address}:${PORT}: ${error.code ?? error.message}`;
      if (problem !== lastProblem) log(`telepathy: ${problem} (trying again every ${PSYNET_POLL_MS / 1000} s)`);
      lastProblem = problem;
    }
  };
  await bindPsynet();
  // The first bind failing (the port in use) is as fatal as for any other address.
  if (psynet === undefined && lastProblem !== '' && lastProblem !== 'missing') fail(lastProblem);
  setInterval(bindPsynet, PSYNET_POLL_MS);
}

// Ready: every address that exists is bound. The init script waits for this file to name this pid.
if (READY !== '') {
  try {
    writeFileSync(READY, `${process.pid}\n`);
  } catch (error) {
    fail(`cannot write the readiness file ${READY}: ${error.code ?? error.message}`);
  }
}
