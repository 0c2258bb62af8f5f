import { writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SshError } from '../src/fleet/errors.ts';
import { runSsh, sshArguments } from '../src/fleet/ssh.ts';
import { parseInventory, resolveFleetNodes, type FleetNode } from '../src/fleet/targets.ts';
import { statusUrl } from '../src/fleet/telepathy.ts';
import { nodeUpdateCommand, parseUpdateAnswer } from '../src/fleet/transport.ts';
import { updateFleet, type FleetTransport, type FleetUpdateEvent, type NodeUpdateAnswer } from '../src/fleet/update.ts';
import type { StatusProbe } from '../src/fleet/telepathy.ts';
import { errorLine, psyops, tempDir } from './helpers.js';

const TELEPATHY = join(import.meta.dirname, '..', '..', 'apkpkg', 'project', 'psyopsOS-base', 'telepathy.mjs');
const dir = tempDir('cli-fleet');
const ws = join(dir, 'ws');

interface Telepathy {
  port: number;
  statusFile: string;
  stop(): Promise<void>;
}

/** The node's real telepathy (from psyopsOS-base) on 127.0.0.1, any free port, serving `statusFile`. */
async function startTelepathy(name: string): Promise<Telepathy> {
  const statusFile = join(dir, `${name}-status.json`);
  const child: ResultPromise = execa('node', [TELEPATHY], {
    env: { TELEPATHY_LISTEN: '127.0.0.1', TELEPATHY_PORT: '0', TELEPATHY_STATUS: statusFile, TELEPATHY_PLUGINS: join(dir, 'no-plugins') },
    timeout: 300_000,
    reject: false,
  });
  const port = await new Promise<number>((done, fail) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      const match = /listening on 127\.0\.0\.1:(\d+)/.exec(chunk.toString());
      if (match) done(Number(match[1]));
    });
    void child.then(() => fail(new Error('telepathy exited')));
    setTimeout(() => fail(new Error('telepathy did not listen within 20 s')), 20_000).unref();
  });
  return {
    port,
    statusFile,
    stop: async () => {
      child.kill();
      await child;
    },
  };
}

/** A port nothing listens on (bound, then closed). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  await new Promise((done) => server.close(done));
  return port;
}

const status = (fields: Record<string, unknown>) => ({
  format: 'psyops-node-status/1',
  status: 'ok',
  hostname: 'host',
  config: { version: 3, source: 'site', signature: 'verified' },
  problems: [],
  startedAt: '2026-12-01T10:00:00.000Z',
  finishedAt: '2026-12-01T10:00:20.000Z',
  ...fields,
});

let alpha: Telepathy;
let beta: Telepathy;
let inventory: string;
let deadPort: number;

beforeAll(async () => {
  const init = await psyops(['init', '--no-password', ws]);
  expect(init.exitCode, init.stderr).toBe(0);
  alpha = await startTelepathy('alpha');
  beta = await startTelepathy('beta');
  deadPort = await freePort();
  writeFileSync(alpha.statusFile, JSON.stringify(status({ hostname: 'alpha-host', release: 'r2', slot: 'B', trial: false, config: { version: 4 } })));
  writeFileSync(
    beta.statusFile,
    JSON.stringify(
      status({
        hostname: 'beta-host',
        release: 'r2',
        slot: 'A',
        trial: false,
        rollback: { slot: 'B', version: 'r3', reason: 'did not reach status=ok (kernel panic, hang or power loss before postboot finished)' },
      }),
    ),
  );
  // As `psyops node create` records them: the psynet address in nodes/<name>.json.
  for (const name of ['alpha', 'beta', 'gamma']) {
    writeFileSync(join(ws, 'nodes', `${name}.json`), JSON.stringify({ psynetAddress: '127.0.0.1', config: { version: 1 } }));
  }
  inventory = join(dir, 'inventory.json');
  writeFileSync(
    inventory,
    JSON.stringify({
      nodes: {
        alpha: { host: '127.0.0.1', sshPort: deadPort, telepathyPort: alpha.port },
        beta: { host: '127.0.0.1', sshPort: deadPort, telepathyPort: beta.port },
        gamma: { host: '127.0.0.1', sshPort: deadPort, telepathyPort: deadPort },
      },
    }),
  );
}, 120_000);

afterAll(async () => {
  await alpha?.stop();
  await beta?.stop();
});

describe('psyops fleet status (real telepathy)', () => {
  it('prints a table of release, slot, config version, status and rollback', async () => {
    const run = await psyops(['fleet', 'status', 'alpha', 'beta', '--inventory', inventory], { cwd: ws });
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout.split('\n').map((line) => line.split(/\s{2,}/))).toEqual([
      ['NODE', 'HOSTNAME', 'RELEASE', 'SLOT', 'CONFIG', 'STATUS', 'ROLLBACK', 'REACHABLE'],
      ['alpha', 'alpha-host', 'r2', 'B', '4', 'ok', '-', 'yes'],
      ['beta', 'beta-host', 'r2', 'A', '3', 'ok', 'from r3 (slot B)', 'yes'],
      [''],
    ]);
  });

  it('--json prints one object with every node; an unreachable node is reported and the exit is 1', async () => {
    const run = await psyops(
      ['fleet', 'status', '--json', '--inventory', inventory, '--identity', join(dir, 'unused-key'), '--ssh-option', 'StrictHostKeyChecking=yes'],
      {
        cwd: ws,
      },
    );
    expect(run.exitCode).toBe(1);
    expect(errorLine(run)).toEqual({ code: 'NODE_UNREACHABLE', message: '1 of 3 node(s) unreachable: gamma' });
    expect(run.stdout.trimEnd().split('\n')).toHaveLength(1);
    const json = JSON.parse(run.stdout) as { nodes: Record<string, unknown>[] };
    expect(json.nodes.map((n) => n.node)).toEqual(['alpha', 'beta', 'gamma']); // every workspace node by default
    expect(json.nodes[0]).toMatchObject({
      node: 'alpha',
      reachable: true,
      hostname: 'alpha-host',
      release: 'r2',
      slot: 'B',
      configVersion: 4,
      status: 'ok',
      rollback: null,
    });
    expect(json.nodes[1]).toMatchObject({ node: 'beta', release: 'r2', slot: 'A', rollback: { slot: 'B', version: 'r3' } });
    expect(json.nodes[2]).toEqual({
      node: 'gamma',
      host: `127.0.0.1:${deadPort}`,
      reachable: false,
      error: `http://127.0.0.1:${deadPort}/status: ECONNREFUSED`,
    });
  });

  it('without an inventory, nodes are reached at the psynet address nodes/<name>.json records, port 7453', async () => {
    const run = await psyops(['fleet', 'status', 'gamma', '--timeout', '3'], { cwd: ws });
    expect(run.exitCode).toBe(1);
    expect(run.stdout).toMatch(/^gamma {2}.*no: http:\/\/127\.0\.0\.1:7453\/status: (ECONNREFUSED|no answer within 3 s)$/m);
  });

  it('a node without status yet says what telepathy said', async () => {
    const empty = await startTelepathy('empty');
    try {
      const file = join(dir, 'empty-inventory.json');
      writeFileSync(file, JSON.stringify({ nodes: { alpha: { host: '127.0.0.1', telepathyPort: empty.port } } }));
      const run = await psyops(['fleet', 'status', 'alpha', '--json', '--inventory', file], { cwd: ws });
      expect(run.exitCode).toBe(1);
      expect(JSON.parse(run.stdout).nodes[0].error).toBe(
        `http://127.0.0.1:${empty.port}/status: HTTP 404 (no status yet: ${empty.statusFile} does not exist (postboot writes it))`,
      );
    } finally {
      await empty.stop();
    }
  });

  it('an unknown node is a one-line usage error (exit 2)', async () => {
    for (const args of [
      ['fleet', 'status', 'delta'],
      ['fleet', 'update', 'alpha', 'delta'],
    ]) {
      const run = await psyops(args, { cwd: ws });
      expect(run.exitCode).toBe(2);
      expect(errorLine(run)).toEqual({ code: 'USAGE', message: 'no node delta in the workspace (nodes/delta.json); known: alpha, beta, gamma' });
    }
  });

  it('refuses a bad inventory in one line', async () => {
    const cases: [string, string][] = [
      ['{"nodes":', 'is not valid JSON'],
      ['[]', 'must be {"nodes":{"<name>":{"host":"…","sshPort":22,"telepathyPort":7453}}}'],
      ['{"nodes":{"alpha":{"host":"127.0.0.1","sshPort":70000}}}', 'nodes.alpha.sshPort must be a port number from 1 to 65535'],
      ['{"nodes":{"alpha":{"host":"-oProxyCommand=x"}}}', 'nodes.alpha.host must be a host name or address'],
      ['{"nodes":{"alpha":{"host":"a","user":"x"}}}', 'nodes.alpha: unknown field "user"'],
      ['{"nodes":{},"extra":1}', 'unknown field "extra"'],
      ['{"nodes":{"alpha":{"host":"a","telepathyVia":"ftp"}}}', 'nodes.alpha.telepathyVia must be "http" (the default) or "ssh"'],
    ];
    for (const [text, message] of cases) {
      const file = join(dir, 'bad-inventory.json');
      writeFileSync(file, text);
      const run = await psyops(['fleet', 'status', '--inventory', file], { cwd: ws });
      expect(run.exitCode, text).toBe(1);
      const error = errorLine(run);
      expect(error.code).toBe('BAD_INVENTORY');
      expect(error.message).toContain(file);
      expect(error.message).toContain(message);
    }
    const missing = await psyops(['fleet', 'status', '--inventory', join(dir, 'missing.json')], { cwd: ws });
    expect(missing.exitCode).toBe(1);
    expect(errorLine(missing).message).toContain('missing.json');
  });

  it('an inventory alone is enough outside a workspace; without either it says so', async () => {
    const run = await psyops(['fleet', 'status', 'alpha', '--inventory', inventory], { cwd: dir });
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^alpha +alpha-host +r2 /m);
    expect(errorLine(await psyops(['fleet', 'status'], { cwd: dir })).code).toBe('NO_WORKSPACE');
  });
});

describe('psyops fleet update: arguments and the real ssh', () => {
  it('refuses bad numbers', async () => {
    for (const [args, message] of [
      [['--parallel', '0'], '--parallel must be a whole number'],
      [['--timeout', 'soon'], '--timeout must be a whole number of seconds'],
    ] as const) {
      const run = await psyops(['fleet', 'update', 'alpha', ...args], { cwd: ws });
      expect(run.exitCode).toBe(2);
      expect(errorLine(run).message).toContain(message);
    }
  });

  it('a node whose SSH port refuses: one line naming the connection, the rest skipped, the table, exit 1', async () => {
    const run = await psyops(['fleet', 'update', 'alpha', 'beta', '--inventory', inventory, '--timeout', '30'], { cwd: ws });
    expect(run.exitCode).toBe(1);
    const lines = run.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe('alpha: updating (canary)');
    expect(lines.at(-1)).toMatch(
      new RegExp(
        `^psyops: fleet update stopped at alpha: ssh root@127\\.0\\.0\\.1 -p ${deadPort}: .*Connection refused \\(skipped: beta\\) \\(FLEET_UPDATE_FAILED\\)$`,
      ),
    );
    expect(run.stdout).toMatch(/^alpha +r2 +B +ok +- +- +- +failed: ssh root@127\.0\.0\.1/m);
    expect(run.stdout).toMatch(/^beta +- +- +- +- +- +- +skipped: not started: an earlier node failed$/m);
  });

  it('--to RELEASE is the target, and must be a release tag', async () => {
    const bad = await psyops(['fleet', 'update', 'alpha', '--to', 'r1;reboot'], { cwd: ws });
    expect(bad.exitCode).toBe(2);
    expect(errorLine(bad).message).toContain('--to must be a release tag');
    const run = await psyops(['fleet', 'update', 'alpha', '--json', '--inventory', inventory, '--timeout', '30', '--to', 'r3'], { cwd: ws });
    expect(run.exitCode).toBe(1);
    expect(JSON.parse(run.stdout)).toMatchObject({ ok: false, target: 'r3' });
  });

  it('--json prints the result as one object', async () => {
    const run = await psyops(['fleet', 'update', 'alpha', '--json', '--inventory', inventory, '--timeout', '30'], { cwd: ws });
    expect(run.exitCode).toBe(1);
    const json = JSON.parse(run.stdout);
    expect(json).toMatchObject({
      ok: false,
      target: null,
      failed: { node: 'alpha' },
      nodes: [{ node: 'alpha', outcome: 'failed', before: { release: 'r2', slot: 'B', status: 'ok' } }],
    });
    expect(json.failed.reason).toMatch(/Connection refused/);
  });

  it('an unreachable telepathy stops the canary before any ssh', async () => {
    const run = await psyops(['fleet', 'update', 'gamma', '--json', '--inventory', inventory], { cwd: ws });
    expect(run.exitCode).toBe(1);
    expect(JSON.parse(run.stdout).failed).toEqual({
      node: 'gamma',
      reason: `unreachable before the update: http://127.0.0.1:${deadPort}/status: ECONNREFUSED`,
    });
  });

  it('builds the ssh command line: BatchMode first, then the operator options, our defaults after them', () => {
    const node: FleetNode = { name: 'alpha', host: '10.10.8.5', sshPort: 2222, telepathyPort: 7453 };
    expect(sshArguments(node, nodeUpdateCommand('r7'), { identity: '/k/id', options: ['StrictHostKeyChecking=yes', 'ConnectTimeout=3'] })).toEqual([
      '-o',
      'BatchMode=yes',
      '-i',
      '/k/id',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'ConnectTimeout=3',
      '-o',
      'ConnectTimeout=10',
      '-o',
      'ServerAliveInterval=15',
      '-o',
      'ServerAliveCountMax=4',
      '-p',
      '2222',
      '-l',
      'root',
      '--',
      '10.10.8.5',
      'psyops-node update --json --reboot --version r7',
    ]);
    expect(nodeUpdateCommand(undefined)).toBe('psyops-node update --json --reboot');
  });

  it('the real ssh: a refused port exits 255 with its reason; a server that never answers hits the time limit', async () => {
    const refused = await runSsh({ name: 'x', host: '127.0.0.1', sshPort: deadPort, telepathyPort: 1 }, 'true', { timeoutMs: 20_000 });
    expect(refused.exitCode).toBe(255);
    expect(refused.stderr).toMatch(/Connection refused/);
    const silent: Server = createServer(() => undefined); // accepts, never sends an SSH banner
    await new Promise<void>((done) => silent.listen(0, '127.0.0.1', done));
    try {
      const port = (silent.address() as AddressInfo).port;
      const error = await runSsh({ name: 'x', host: '127.0.0.1', sshPort: port, telepathyPort: 1 }, 'true', { timeoutMs: 1500 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SshError);
      expect((error as Error).message).toBe(`ssh root@127.0.0.1 -p ${port}: "true" did not finish within 2 s`);
    } finally {
      silent.close();
    }
    const missing = await runSsh({ name: 'x', host: '127.0.0.1', sshPort: 22, telepathyPort: 1 }, 'true', { timeoutMs: 1000, program: 'no-such-ssh' }).catch(
      (e: unknown) => e,
    );
    expect((missing as Error).message).toBe('cannot run no-such-ssh (ENOENT): install OpenSSH (Debian package openssh-client)');
  });

  it('reads the answer psyops-node printed, its last JSON line', () => {
    expect(parseUpdateAnswer('fetching\n{"action":"updated","from":"r1","to":"r2","slot":"B","bytes":1,"ms":2}\n')).toEqual({
      action: 'updated',
      from: 'r1',
      to: 'r2',
      slot: 'B',
      bytes: 1,
      ms: 2,
    });
    expect(parseUpdateAnswer('{"other":1}\nnot json\n')).toBeUndefined();
  });
});

describe('inventory and node resolution (module)', () => {
  it('the inventory wins over the recorded address; ports default to 22 and 7453; the order is as asked', () => {
    const inventory = parseInventory('{"nodes":{"b":{"host":"127.0.0.1","telepathyPort":17453}}}', 'inv.json');
    const workspace = new Map([
      ['a', '10.10.8.2'],
      ['b', '10.10.8.3'],
      ['c', undefined],
    ]);
    expect(resolveFleetNodes(['b', 'a'], workspace, inventory)).toEqual([
      { name: 'b', host: '127.0.0.1', sshPort: 22, telepathyPort: 17453 },
      { name: 'a', host: '10.10.8.2', sshPort: 22, telepathyPort: 7453 },
    ]);
    const viaSsh = parseInventory('{"nodes":{"b":{"host":"127.0.0.1","sshPort":2222,"telepathyVia":"ssh"}}}', 'inv.json');
    const [b] = resolveFleetNodes(['b'], workspace, viaSsh);
    expect(b).toEqual({ name: 'b', host: '127.0.0.1', sshPort: 2222, telepathyPort: 7453, telepathyVia: 'ssh' });
    // Asked on the node itself: its telepathy listens on psynet and 127.0.0.1 only.
    expect(statusUrl(b!)).toBe('http://127.0.0.1:7453/status');
    expect(() => resolveFleetNodes(['c'], workspace)).toThrow(/nodes\/c\.json records no psynetAddress/);
    expect(() => resolveFleetNodes(['a', 'a'], workspace)).toThrow(/named twice/);
  });
});

// ---------- the update orchestration, through its transport ----------

interface FakeNode {
  release: string;
  finishedAt: number;
  /** What the node does when it reboots into `to`: come back on it, roll back, or stay down. */
  behaviour: 'ok' | 'rollback' | 'down' | 'degraded' | 'refuse';
  down?: boolean;
}

/** Nodes as a state machine on a fake clock: an update takes 10 "s", the reboot 30. */
function fakeFleet(nodes: Record<string, FakeNode>, newest = 'r2') {
  let clock = 0;
  const log: string[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const started = new Set<string>();
  /** Counts updates in flight: from their start to the end of the node's wait. */
  const onEvent = (event: FleetUpdateEvent) => {
    if (event.type === 'start') {
      started.add(event.node);
      maxInFlight = Math.max(maxInFlight, ++inFlight);
    } else if (event.type === 'done' && started.has(event.report.node)) inFlight--;
  };
  const reboots: { node: string; at: number; to: string; prior: string }[] = [];
  const transport: FleetTransport = {
    async status(node): Promise<StatusProbe> {
      const state = nodes[node.name]!;
      const reboot = reboots.find((r) => r.node === node.name && clock >= r.at);
      if (reboot) {
        reboots.splice(reboots.indexOf(reboot), 1);
        state.finishedAt = clock;
        if (state.behaviour === 'down') state.down = true;
        else if (state.behaviour === 'rollback') {
          state.release = reboot.prior;
          (state as FakeNode & { rollback?: unknown }).rollback = { slot: 'A', version: reboot.to, reason: 'did not reach status=ok' };
        } else state.release = reboot.to;
        log.push(`${node.name}:back`);
      }
      if (state.down || reboots.some((r) => r.node === node.name && clock >= r.at - 25_000)) return { reachable: false, error: 'ECONNREFUSED' };
      const rollback = (state as FakeNode & { rollback?: { slot: string; version: string; reason: string } }).rollback ?? null;
      return {
        reachable: true,
        status: {
          hostname: node.name,
          release: state.release,
          slot: 'A',
          trial: false,
          rollback,
          configVersion: 1,
          status: state.behaviour === 'degraded' && state.finishedAt > 0 ? 'degraded' : 'ok',
          problems: state.behaviour === 'degraded' ? ['k3s: failed'] : [],
          finishedAt: new Date(state.finishedAt * 1000).toISOString(),
        },
      };
    },
    async update(node, version): Promise<NodeUpdateAnswer> {
      log.push(`${node.name}:update:${version ?? 'newest'}`);
      await transport.sleep(10_000);
      const state = nodes[node.name]!;
      const to = version ?? newest;
      if (state.behaviour === 'refuse') {
        throw new Error(`${node.name}: psyops-node update exited 1: psyops-node: r9 is not on the site (NOT_FOUND)`);
      }
      if (state.release === to) {
        return { action: 'up-to-date', from: to };
      }
      reboots.push({ node: node.name, at: clock + 30_000, to, prior: state.release });
      return { action: 'updated', from: state.release, to, slot: 'B', bytes: 1, ms: 1 };
    },
    sleep: async (ms) => {
      // Cooperative fake time: every waiter advances the clock by its own wait.
      await new Promise((r) => setImmediate(r));
      clock += ms;
    },
    now: () => clock,
  };
  const nodeList = Object.keys(nodes).map((name): FleetNode => ({ name, host: '127.0.0.1', sshPort: 22, telepathyPort: 7453 }));
  return { transport, nodeList, log, onEvent, maxInFlight: () => maxInFlight };
}

describe('updateFleet ordering (module, through the transport)', () => {
  const healthy = (count: number, release = 'r1') =>
    Object.fromEntries(Array.from({ length: count }, (_, i) => [`n${i + 1}`, { release, finishedAt: 0, behaviour: 'ok' as FakeNode['behaviour'] }]));

  it('the canary first and back before any other starts; then the rest at most --parallel at once, to the canary’s release', async () => {
    const fleet = fakeFleet(healthy(5));
    const result = await updateFleet(fleet.nodeList, fleet.transport, { parallel: 2, returnTimeoutMs: 600_000, pollMs: 2000, onEvent: fleet.onEvent });
    expect(result.ok).toBe(true);
    expect(result.target).toBe('r2');
    expect(fleet.log.slice(0, 3)).toEqual(['n1:update:newest', 'n1:back', 'n2:update:r2']);
    expect(fleet.log.filter((l) => l.includes(':update:r2'))).toHaveLength(4);
    expect(fleet.maxInFlight()).toBe(2);
    expect(result.nodes.map((n) => [n.node, n.outcome, n.before?.release, n.after?.release])).toEqual([
      ['n1', 'updated', 'r1', 'r2'],
      ['n2', 'updated', 'r1', 'r2'],
      ['n3', 'updated', 'r1', 'r2'],
      ['n4', 'updated', 'r1', 'r2'],
      ['n5', 'updated', 'r1', 'r2'],
    ]);
  });

  it('--parallel 1 updates one node after the other', async () => {
    const fleet = fakeFleet(healthy(3));
    await updateFleet(fleet.nodeList, fleet.transport, { parallel: 1, returnTimeoutMs: 600_000, onEvent: fleet.onEvent });
    expect(fleet.log).toEqual(['n1:update:newest', 'n1:back', 'n2:update:r2', 'n2:back', 'n3:update:r2', 'n3:back']);
    expect(fleet.maxInFlight()).toBe(1);
  });

  it('a canary that rolls back stops the run; every other node is skipped', async () => {
    const nodes = healthy(3);
    nodes.n1!.behaviour = 'rollback';
    const fleet = fakeFleet(nodes, 'r3');
    const result = await updateFleet(fleet.nodeList, fleet.transport, { parallel: 2, returnTimeoutMs: 600_000, onEvent: fleet.onEvent });
    expect(result.ok).toBe(false);
    expect(result.failed).toEqual({ node: 'n1', reason: 'rolled back from r3 (slot A) to r1: did not reach status=ok' });
    expect(result.nodes.map((n) => n.outcome)).toEqual(['failed', 'skipped', 'skipped']);
    expect(fleet.log.filter((l) => l.includes(':update:'))).toEqual(['n1:update:newest']);
  });

  it('stops at the first failure after the canary: nodes in flight finish, later ones are skipped', async () => {
    const nodes = healthy(6);
    nodes.n3!.behaviour = 'refuse';
    const fleet = fakeFleet(nodes);
    const result = await updateFleet(fleet.nodeList, fleet.transport, { parallel: 2, returnTimeoutMs: 600_000, onEvent: fleet.onEvent });
    expect(result.failed).toEqual({ node: 'n3', reason: 'n3: psyops-node update exited 1: psyops-node: r9 is not on the site (NOT_FOUND)' });
    // n2 and n3 started together; n3 failed first, so n2 finished and n4 (the next free slot) never started.
    expect(result.nodes.map((n) => n.outcome)).toEqual(['updated', 'updated', 'failed', 'skipped', 'skipped', 'skipped']);
  });

  it('a node that does not come back within the time limit fails with what was last seen', async () => {
    const nodes = healthy(2);
    nodes.n1!.behaviour = 'down';
    const fleet = fakeFleet(nodes);
    const result = await updateFleet(fleet.nodeList, fleet.transport, { parallel: 1, returnTimeoutMs: 120_000 });
    expect(result.failed).toEqual({ node: 'n1', reason: 'did not come back on r2 within 120 s (last seen: unreachable: ECONNREFUSED)' });
    expect(result.nodes[1]).toMatchObject({ outcome: 'skipped' });
  });

  it('a node back on the release but degraded fails the run', async () => {
    const nodes = healthy(2);
    nodes.n1!.behaviour = 'degraded';
    const fleet = fakeFleet(nodes);
    const result = await updateFleet(fleet.nodeList, fleet.transport, { parallel: 1, returnTimeoutMs: 600_000, onEvent: fleet.onEvent });
    expect(result.failed).toEqual({ node: 'n1', reason: 'came back on r2 with status degraded: k3s: failed' });
  });

  it('nodes already on the release are left alone; an up-to-date canary sets the release for the rest', async () => {
    const nodes = healthy(3, 'r2');
    nodes.n3!.release = 'r1';
    const fleet = fakeFleet(nodes);
    const result = await updateFleet(fleet.nodeList, fleet.transport, { parallel: 2, returnTimeoutMs: 600_000, onEvent: fleet.onEvent });
    expect(result.ok).toBe(true);
    expect(fleet.log).toEqual(['n1:update:newest', 'n3:update:r2', 'n3:back']);
    expect(result.nodes.map((n) => n.outcome)).toEqual(['up-to-date', 'up-to-date', 'updated']);
  });
});
