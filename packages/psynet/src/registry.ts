import { hostname } from 'node:os';
import { mkdir, open, readFile, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileAccessError, writeFilesAtomically, readTextIfExists } from '@psyops/core';
import {
  AddressOutsidePoolError,
  AddressTakenError,
  HostConflictError,
  HostNotFoundError,
  PoolFullError,
  RegistryCorruptError,
  RegistryLockedError,
} from './errors.js';
import { ipToNumber, isIPv4, numberToIp } from './ip.js';
import { assertHostName, assertRole, ROLE_GROUPS, type AddressPlan, type Role } from './plan.js';

/** What the registry remembers of a signed certificate. */
export interface CertificateRecord {
  fingerprint: string;
  /** RFC 3339, UTC. */
  notAfter: string;
}

export interface HostEntry {
  name: string;
  role: Role;
  /** The host's address, without prefix length (certificates carry the network's). */
  ip: string;
  /** Groups its certificate carries: the role's group first, then extras. */
  groups: string[];
  /** RFC 3339, UTC. */
  created: string;
  certificate?: CertificateRecord;
}

export interface Registry {
  version: 1;
  /** Sorted by name. */
  hosts: HostEntry[];
  /** Addresses that were allocated once and released; reused only when a pool has no fresh address. */
  released: string[];
}

export const emptyRegistry = (): Registry => ({ version: 1, hosts: [], released: [] });

const HEX64 = /^[0-9a-f]{64}$/;

/** Parses registry text strictly: anything unexpected means a human or a bug touched it. */
export function parseRegistry(text: string, source = 'registry'): Registry {
  const corrupt = (reason: string) =>
    new RegistryCorruptError(`${source} is corrupted (${reason}); fix or restore it from version control, psyops will not overwrite it`);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw corrupt(`not valid JSON: ${(error as Error).message}`);
  }
  const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
  const onlyKeys = (value: Record<string, unknown>, allowed: string[], where: string) => {
    const extra = Object.keys(value).find((key) => !allowed.includes(key));
    if (extra !== undefined) throw corrupt(`${where} has an unknown field "${extra}"`);
  };
  if (!isObject(data)) throw corrupt('not a JSON object');
  onlyKeys(data, ['version', 'hosts', 'released'], 'the top level');
  if (data.version !== 1) throw corrupt(`unsupported version ${JSON.stringify(data.version)}`);
  if (!Array.isArray(data.hosts)) throw corrupt('"hosts" is not a list');
  if (!Array.isArray(data.released) || !data.released.every((ip) => typeof ip === 'string' && isIPv4(ip))) {
    throw corrupt('"released" is not a list of IPv4 addresses');
  }
  const names = new Set<string>();
  const ips = new Set<string>();
  const hosts = data.hosts.map((raw, index): HostEntry => {
    const where = `hosts[${index}]`;
    if (!isObject(raw)) throw corrupt(`${where} is not an object`);
    onlyKeys(raw, ['name', 'role', 'ip', 'groups', 'created', 'certificate'], where);
    const { name, role, ip, groups, created, certificate } = raw;
    if (typeof name !== 'string') throw corrupt(`${where}.name is not a string`);
    try {
      assertHostName(name);
      assertRole(String(role));
    } catch (error) {
      throw corrupt(`${where}: ${(error as Error).message}`);
    }
    if (typeof ip !== 'string' || !isIPv4(ip)) throw corrupt(`${where}.ip is not an IPv4 address`);
    if (!Array.isArray(groups) || !groups.every((group) => typeof group === 'string' && group !== '')) throw corrupt(`${where}.groups is not a list of names`);
    if (typeof created !== 'string' || Number.isNaN(Date.parse(created))) throw corrupt(`${where}.created is not a date`);
    if (names.has(name)) throw corrupt(`host ${name} appears twice`);
    if (ips.has(ip)) throw corrupt(`address ${ip} is given to two hosts`);
    names.add(name);
    ips.add(ip);
    const entry: HostEntry = { name, role: role as Role, ip, groups: groups as string[], created };
    if (certificate !== undefined) {
      if (!isObject(certificate)) throw corrupt(`${where}.certificate is not an object`);
      onlyKeys(certificate, ['fingerprint', 'notAfter'], `${where}.certificate`);
      if (typeof certificate.fingerprint !== 'string' || !HEX64.test(certificate.fingerprint))
        throw corrupt(`${where}.certificate.fingerprint is not a SHA-256 hex digest`);
      if (typeof certificate.notAfter !== 'string' || Number.isNaN(Date.parse(certificate.notAfter)))
        throw corrupt(`${where}.certificate.notAfter is not a date`);
      entry.certificate = { fingerprint: certificate.fingerprint, notAfter: certificate.notAfter };
    }
    return entry;
  });
  return { version: 1, hosts, released: data.released as string[] };
}

/** Stable, diff-friendly text: fixed key order, hosts by name, one field per line. */
export function serializeRegistry(registry: Registry): string {
  const hosts = [...registry.hosts]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((host) => ({
      name: host.name,
      role: host.role,
      ip: host.ip,
      groups: host.groups,
      created: host.created,
      ...(host.certificate ? { certificate: { fingerprint: host.certificate.fingerprint, notAfter: host.certificate.notAfter } } : {}),
    }));
  const released = [...new Set(registry.released)].sort((a, b) => ipToNumber(a) - ipToNumber(b));
  return `${JSON.stringify({ version: 1, hosts, released }, null, 2)}\n`;
}

/** Reads the registry; a missing file is an empty registry, anything unparsable is refused. */
export async function readRegistry(path: string): Promise<Registry> {
  const text = await readTextIfExists(path, 'psynet registry');
  return text === undefined ? emptyRegistry() : parseRegistry(text, path);
}

export interface LockOptions {
  /** How long to wait for another process's lock before giving up (default 30 s). */
  timeoutMs?: number;
  /** A lock older than this is taken to be left by a crashed process (default 60 s). */
  staleMs?: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A lock is stale when its owner on this machine is gone, or it is older than `staleMs`. */
async function lockIsStale(lockPath: string, staleMs: number): Promise<boolean> {
  try {
    const [text, info] = await Promise.all([readFile(lockPath, 'utf8'), stat(lockPath)]);
    if (Date.now() - info.mtimeMs > staleMs) return true;
    const owner = JSON.parse(text) as { pid?: unknown; host?: unknown };
    return owner.host === hostname() && typeof owner.pid === 'number' && !processAlive(owner.pid);
  } catch {
    return false; // gone already, or being written right now: look again on the next round
  }
}

/**
 * Runs `fn` holding `<path>.lock`, created with O_EXCL so only one process at a time gets it.
 * The wait is bounded; a lock left by a dead process (or older than staleMs) is removed.
 */
export async function withFileLock<T>(path: string, fn: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  const lockPath = `${path}.lock`;
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  const staleMs = options.staleMs ?? 60_000;
  await mkdir(dirname(lockPath), { recursive: true });
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(lockPath, 'wx', 0o644);
      try {
        await handle.writeFile(JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() }));
      } catch (error) {
        await unlink(lockPath).catch(() => undefined);
        throw error;
      } finally {
        await handle.close();
      }
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw fileAccessError(error, lockPath, 'psynet registry lock');
    }
    if (Date.now() > deadline) {
      throw new RegistryLockedError(`the psynet registry is locked by another psyops process (${lockPath}); if none is running, remove that file`);
    }
    // Small race: two processes may both judge the same lock stale; the window is one unlink wide
    // and only opens after a crash, so it is accepted rather than adding a second lock.
    if (await lockIsStale(lockPath, staleMs)) await unlink(lockPath).catch(() => undefined);
    else await sleep(Math.min(100, 5 + attempt * 5) * (0.5 + Math.random()));
  }
  try {
    return await fn();
  } finally {
    await unlink(lockPath).catch(() => undefined);
  }
}

/**
 * Read-modify-write of the registry file under its lock. `change` may mutate the registry it is
 * given; the file is rewritten atomically (temp + fsync + rename) only if its text changed.
 */
export async function updateRegistry<T>(path: string, change: (registry: Registry) => T | Promise<T>, options: LockOptions = {}): Promise<T> {
  return withFileLock(
    path,
    async () => {
      const registry = await readRegistry(path);
      const before = serializeRegistry(registry);
      const result = await change(registry);
      const after = serializeRegistry(registry);
      if (after !== before) await writeFilesAtomically([{ path, data: after, mode: 0o644 }]);
      return result;
    },
    options,
  );
}

export interface AllocateRequest {
  name: string;
  role: string;
  /** An explicit address: honoured only if free and inside the role's pool. */
  ip?: string;
  /** RFC 3339 creation time to record. */
  created: string;
}

/** Addresses a host can never get: those ending in .0 and the network's broadcast address. */
function usable(plan: AddressPlan, address: number): boolean {
  return (address & 0xff) !== 0 && address !== plan.network.last && address !== plan.network.first;
}

/**
 * Allocates in memory (call it inside updateRegistry). Idempotent: an existing host with the same
 * role gets its address back. New hosts get the lowest never-used address of the pool; released
 * ones are reused only when none is left.
 */
export function allocateHost(registry: Registry, plan: AddressPlan, request: AllocateRequest): { host: HostEntry; allocated: boolean } {
  const name = assertHostName(request.name);
  const role = assertRole(request.role);
  const pool = plan.pools[role];
  const existing = registry.hosts.find((host) => host.name === name);
  if (existing) {
    if (existing.role !== role) throw new HostConflictError(`${name} is already allocated as a ${existing.role} (${existing.ip}), not a ${role}`);
    if (request.ip !== undefined && request.ip !== existing.ip) {
      throw new HostConflictError(`${name} already has address ${existing.ip}; release it first to move it to ${request.ip}`);
    }
    return { host: existing, allocated: false };
  }
  const taken = new Map(registry.hosts.map((host) => [host.ip, host.name]));
  const released = new Set(registry.released);
  let address: number | undefined;
  if (request.ip !== undefined) {
    if (!isIPv4(request.ip)) throw new AddressOutsidePoolError(`"${request.ip}" is not an IPv4 address`);
    const wanted = ipToNumber(request.ip);
    if (wanted < pool.first || wanted > pool.last) throw new AddressOutsidePoolError(`${request.ip} is outside the ${role} pool ${pool.text}`);
    if (!usable(plan, wanted))
      throw new AddressOutsidePoolError(`${request.ip} cannot be a host address (it ends in .0 or is the network's broadcast address)`);
    const holder = taken.get(request.ip);
    if (holder !== undefined) throw new AddressTakenError(`${request.ip} is already taken by ${holder}`);
    address = wanted;
  } else {
    // Pools are at most a few thousand addresses; two linear passes are plenty.
    for (let candidate = pool.first; candidate <= pool.last && address === undefined; candidate++) {
      const text = numberToIp(candidate);
      if (usable(plan, candidate) && !taken.has(text) && !released.has(text)) address = candidate;
    }
    for (let candidate = pool.first; candidate <= pool.last && address === undefined; candidate++) {
      const text = numberToIp(candidate);
      if (usable(plan, candidate) && !taken.has(text)) address = candidate;
    }
    if (address === undefined) throw new PoolFullError(`the ${role} pool ${pool.text} is full: release a host or widen the pool in psyops.config.json`);
  }
  const ip = numberToIp(address);
  registry.released = registry.released.filter((other) => other !== ip);
  const host: HostEntry = { name, role, ip, groups: [ROLE_GROUPS[role]], created: request.created };
  registry.hosts.push(host);
  registry.hosts.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { host, allocated: true };
}

/** Removes a host; its address goes to the released list. */
export function releaseHost(registry: Registry, name: string): HostEntry {
  const index = registry.hosts.findIndex((host) => host.name === name);
  const host = registry.hosts[index];
  if (index < 0 || !host) throw new HostNotFoundError(`${name} is not in the psynet registry`);
  registry.hosts.splice(index, 1);
  registry.released.push(host.ip);
  return host;
}

export function findHost(registry: Registry, name: string): HostEntry {
  const host = registry.hosts.find((entry) => entry.name === name);
  if (!host) throw new HostNotFoundError(`${name} is not in the psynet registry; allocate it first (psyops psynet allocate ${name} --role ROLE)`);
  return host;
}
