import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AddressOutsidePoolError,
  AddressPlanError,
  AddressTakenError,
  allocateHost,
  DEFAULT_PLAN,
  HostConflictError,
  InvalidNameError,
  PoolFullError,
  readRegistry,
  RegistryCorruptError,
  RegistryLockedError,
  releaseHost,
  resolvePlan,
  initCa,
  psynetFiles,
  UnknownRoleError,
  updateRegistry,
  type Registry,
} from '../src/index.ts';
import { emptyRegistry, parseRegistry, serializeRegistry, withFileLock } from '../src/registry.ts';

const plan = resolvePlan(DEFAULT_PLAN);
const created = '2026-11-25T00:00:00Z';
const dir = mkdtempSync(join(tmpdir(), 'psynet-registry-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const allocate = (registry: Registry, name: string, role: string, ip?: string) =>
  allocateHost(registry, plan, { name, role, created, ...(ip ? { ip } : {}) }).host.ip;

describe('address plan', () => {
  it('accepts the default plan', () => {
    expect(plan.network.text).toBe('10.10.8.0/22');
    expect(plan.pools.node.first).toBe(0x0a0a0a00);
  });

  it('refuses pools outside the network, overlapping pools and bad CIDRs', () => {
    expect(() => resolvePlan({ ...DEFAULT_PLAN, pools: { ...DEFAULT_PLAN.pools, node: '10.10.12.0/23' } })).toThrow(AddressPlanError);
    expect(() => resolvePlan({ ...DEFAULT_PLAN, pools: { ...DEFAULT_PLAN.pools, client: '10.10.8.128/25' } })).toThrow(/overlap/);
    expect(() => resolvePlan({ ...DEFAULT_PLAN, network: '10.10.8.0/33' })).toThrow(AddressPlanError);
    expect(() => resolvePlan({ ...DEFAULT_PLAN, network: '10.10.9.0/22' })).toThrow(/host bits/);
  });
});

describe('allocation', () => {
  it('gives the lowest never-used address, skipping .0, per role pool', () => {
    const registry = emptyRegistry();
    expect(allocate(registry, 'lighthouse1', 'lighthouse')).toBe('10.10.8.1');
    expect(allocate(registry, 'phone', 'client')).toBe('10.10.9.1');
    expect(allocate(registry, 'node1', 'node')).toBe('10.10.10.1');
    expect(allocate(registry, 'node2', 'node')).toBe('10.10.10.2');
    expect(registry.hosts.map((host) => host.name)).toEqual(['lighthouse1', 'node1', 'node2', 'phone']);
    expect(registry.hosts.find((host) => host.name === 'phone')!.groups).toEqual(['clients']);
  });

  it('is idempotent and refuses to change role or address of an existing host', () => {
    const registry = emptyRegistry();
    allocate(registry, 'node1', 'node');
    expect(allocateHost(registry, plan, { name: 'node1', role: 'node', created }).allocated).toBe(false);
    expect(allocate(registry, 'node1', 'node')).toBe('10.10.10.1');
    expect(allocate(registry, 'node1', 'node', '10.10.10.1')).toBe('10.10.10.1');
    expect(() => allocate(registry, 'node1', 'client')).toThrow(HostConflictError);
    expect(() => allocate(registry, 'node1', 'node', '10.10.10.9')).toThrow(HostConflictError);
    expect(registry.hosts).toHaveLength(1);
  });

  it('crosses .255 and skips .0 inside a pool; never gives the network broadcast', () => {
    const registry = emptyRegistry();
    for (let i = 1; i <= 255; i++) allocate(registry, `n${i}`, 'node');
    expect(registry.hosts.find((host) => host.name === 'n255')!.ip).toBe('10.10.10.255');
    expect(allocate(registry, 'next', 'node')).toBe('10.10.11.1');
    expect(() => allocate(registry, 'bcast', 'node', '10.10.11.255')).toThrow(AddressOutsidePoolError);
    expect(() => allocate(registry, 'zero', 'node', '10.10.11.0')).toThrow(AddressOutsidePoolError);
    for (let i = 2; i <= 254; i++) allocate(registry, `m${i}`, 'node');
    expect(registry.hosts.find((host) => host.name === 'm254')!.ip).toBe('10.10.11.254');
    expect(() => allocate(registry, 'one-too-many', 'node')).toThrow(PoolFullError);
  });

  it('reuses released addresses only once the pool has no never-used address left', () => {
    const small = resolvePlan({ network: '10.10.8.0/22', pools: { lighthouse: '10.10.8.0/30', client: '10.10.9.0/24', node: '10.10.10.0/23' } });
    const registry = emptyRegistry();
    const take = (name: string) => allocateHost(registry, small, { name, role: 'lighthouse', created }).host.ip;
    expect(take('a')).toBe('10.10.8.1');
    expect(take('b')).toBe('10.10.8.2');
    releaseHost(registry, 'a');
    expect(registry.released).toEqual(['10.10.8.1']);
    expect(take('c')).toBe('10.10.8.3');
    expect(take('d')).toBe('10.10.8.1');
    expect(registry.released).toEqual([]);
    expect(() => take('e')).toThrow(PoolFullError);
    expect(() => take('e')).toThrow(/lighthouse pool 10\.10\.8\.0\/30 is full/);
  });

  it('honours an explicit address only if free and inside the role pool', () => {
    const registry = emptyRegistry();
    expect(allocate(registry, 'node9', 'node', '10.10.10.9')).toBe('10.10.10.9');
    expect(() => allocate(registry, 'other', 'node', '10.10.10.9')).toThrow(AddressTakenError);
    expect(() => allocate(registry, 'other', 'node', '10.10.9.9')).toThrow(AddressOutsidePoolError);
    expect(() => allocate(registry, 'other', 'node', '10.10.10.999')).toThrow(AddressOutsidePoolError);
    expect(allocate(registry, 'auto', 'node')).toBe('10.10.10.1');
  });

  it('refuses unknown roles and names that are not DNS labels', () => {
    const registry = emptyRegistry();
    expect(() => allocate(registry, 'x', 'server')).toThrow(UnknownRoleError);
    for (const name of ['', 'Node1', 'node_1', '-node', 'node-', 'a.b', 'x'.repeat(64), 'nöde']) {
      expect(() => allocate(registry, name, 'node'), name).toThrow(InvalidNameError);
    }
    expect(allocate(registry, 'x'.repeat(63), 'node')).toBe('10.10.10.1');
  });
});

describe('registry file', () => {
  it('round-trips with stable, diff-friendly text', () => {
    const registry = emptyRegistry();
    allocate(registry, 'zeta', 'node');
    allocate(registry, 'alpha', 'client');
    const text = serializeRegistry(registry);
    expect(serializeRegistry(parseRegistry(text))).toBe(text);
    expect(text.indexOf('"alpha"')).toBeLessThan(text.indexOf('"zeta"'));
    expect(text).toContain('    {\n      "name": "alpha",\n      "role": "client",\n      "ip": "10.10.9.1",');
  });

  it('refuses a corrupted registry and never overwrites it', async () => {
    const path = join(dir, 'corrupt.json');
    const cases = [
      '{"version":1,"hosts":[',
      '[]',
      '{"version":2,"hosts":[],"released":[]}',
      '{"version":1,"hosts":[{"name":"a","role":"node","ip":"10.10.10.1","groups":[],"created":"2026-01-01T00:00:00Z"},{"name":"b","role":"node","ip":"10.10.10.1","groups":[],"created":"2026-01-01T00:00:00Z"}],"released":[]}',
      '{"version":1,"hosts":[{"name":"a","role":"boss","ip":"10.10.10.1","groups":[],"created":"2026-01-01T00:00:00Z"}],"released":[]}',
      '{"version":1,"hosts":[],"released":["10.10.10"]}',
      '{"version":1,"hosts":[],"released":[],"extra":true}',
    ];
    for (const text of cases) {
      writeFileSync(path, text);
      await expect(
        updateRegistry(path, (registry) => allocateHost(registry, plan, { name: 'new', role: 'node', created })),
        text,
      ).rejects.toThrow(RegistryCorruptError);
      expect(readFileSync(path, 'utf8')).toBe(text);
      expect(existsSync(`${path}.lock`)).toBe(false);
    }
  });

  it('writes only when something changed, under the lock', async () => {
    const path = join(dir, 'registry.json');
    await updateRegistry(path, (registry) => allocateHost(registry, plan, { name: 'node1', role: 'node', created }));
    const text = readFileSync(path, 'utf8');
    expect((await readRegistry(path)).hosts[0]!.ip).toBe('10.10.10.1');
    await updateRegistry(path, (registry) => allocateHost(registry, plan, { name: 'node1', role: 'node', created: '2030-01-01T00:00:00Z' }));
    expect(readFileSync(path, 'utf8')).toBe(text);
  });

  it('waits a bounded time for a live lock, and breaks the lock of a dead process', async () => {
    const path = join(dir, 'locked.json');
    writeFileSync(`${path}.lock`, JSON.stringify({ pid: process.pid, host: hostname() }));
    await expect(withFileLock(path, async () => 1, { timeoutMs: 300 })).rejects.toThrow(RegistryLockedError);
    // A pid that cannot exist (above Linux's pid_max): the owner is gone.
    writeFileSync(`${path}.lock`, JSON.stringify({ pid: 2 ** 22 + 1, host: hostname() }));
    expect(await withFileLock(path, async () => 2, { timeoutMs: 2000 })).toBe(2);
    expect(existsSync(`${path}.lock`)).toBe(false);
    // A live owner that has held it for longer than staleMs is taken to be hung.
    writeFileSync(`${path}.lock`, JSON.stringify({ pid: process.pid, host: hostname() }));
    const old = new Date(Date.now() - 120_000);
    utimesSync(`${path}.lock`, old, old);
    expect(await withFileLock(path, async () => 3, { timeoutMs: 2000, staleMs: 60_000 })).toBe(3);
  });

  it('creates the registry folder when it is missing', async () => {
    const path = join(dir, 'not', 'yet', 'registry.json');
    await updateRegistry(path, (registry) => allocateHost(registry, plan, { name: 'n', role: 'node', created }));
    expect((await readRegistry(path)).hosts).toHaveLength(1);
  });

  it('two CA inits at once: exactly one CA is created, the other is refused', async () => {
    const files = psynetFiles(join(dir, 'ca-race'));
    const now = Math.floor(Date.now() / 1000);
    const results = await Promise.allSettled([1, 2, 3].map((n) => initCa(files, { name: `ca${n}`, durationSeconds: 60, now })));
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    for (const result of results) if (result.status === 'rejected') expect((result.reason as { code: string }).code).toBe('FILE_EXISTS');
  });

  it('serialises concurrent read-modify-write in one process', async () => {
    const path = join(dir, 'parallel.json');
    const names = Array.from({ length: 30 }, (_, i) => `p${i}`);
    const ips = await Promise.all(
      names.map((name) => updateRegistry(path, (registry) => allocateHost(registry, plan, { name, role: 'node', created }).host.ip)),
    );
    expect(new Set(ips).size).toBe(30);
    expect((await readRegistry(path)).hosts).toHaveLength(30);
  });
});
