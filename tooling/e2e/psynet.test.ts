import { join } from 'node:path';
import { serveSite, type SiteServer } from '@psyops/siteapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDefaultImage, scratchDir, serialLines, statusFromSerial } from './harness.ts';
import {
  createPsynetWorkspace,
  NODE_A,
  NODE_B,
  ssh,
  startAgent,
  startNode,
  uniqueLinkName,
  type NodePlan,
  type PsynetWorkspace,
  type RunningNode,
} from './psynet-nodes.ts';

// Issue 13, end to end: two nodes from the same ISO join psynet over an L2 link between them —
// node-a a lighthouse, node-b a node — and psynet carries an SSH login from one to the other;
// a third node whose config asks for what the image lacks boots degraded and says why.
const scratch = scratchDir('psynet');
const BOOT_TIMEOUT_MS = 600_000;
const K3S_TOKEN = 'e2e-k3s-token-5c1e9a';
/** Asks for a service and a k3s agent the default image does not have. */
const NODE_C: NodePlan = {
  name: 'node-c',
  mac: '52:54:00:77:00:0c',
  config: { services: ['postgresql'], k3s: { role: 'agent', serverUrl: 'https://10.10.8.10:6443', token: { secret: K3S_TOKEN } } },
};

let iso: string;
let ws: PsynetWorkspace;
let server: SiteServer;

beforeAll(async () => {
  ({ iso } = await buildDefaultImage(scratch));
  ws = await createPsynetWorkspace(scratch, [NODE_A, NODE_B, NODE_C]);
  server = await serveSite({ root: ws.siteDir });
});
afterAll(() => server?.close());

const boot = (plan: NodePlan, link?: string) =>
  startNode({
    iso,
    plan,
    secretImage: ws.secretImages[plan.name]!,
    sitePort: server.port,
    serialLog: join(scratch, `serial-${plan.name}.log`),
    timeoutMs: BOOT_TIMEOUT_MS,
    ...(link ? { link } : {}),
  });

/** GET /status from telepathy, which starts right after postboot: tried again for up to 60 s while nothing answers. */
async function telepathyStatus(port: number): Promise<Response> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      return await fetch(`http://127.0.0.1:${port}/status`, { signal: AbortSignal.timeout(20_000) });
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

/** Waits for postboot; on failure the message carries the end of every serial log. */
async function configured(node: RunningNode) {
  const { serial } = await node.configured;
  const context = `${node.name}: serial log ${join(scratch, `serial-${node.name}.log`)}, its end:\n${serial.slice(-4000)}`;
  expect(serial, context).not.toContain('psyops-init: FATAL');
  return { serial, status: statusFromSerial(serial), context };
}

describe('psynet between two booted nodes (QEMU, BIOS)', () => {
  it('node-a (lighthouse) and node-b come up ok; ssh reaches node-a, and from there node-b by its psynet address; telepathy on node-b serves /status', async () => {
    const link = uniqueLinkName();
    const a = await boot(NODE_A, link);
    const b = await boot(NODE_B, link);
    const agent = await startAgent(scratch, ws.operatorKey);
    try {
      const [upA, upB] = await Promise.all([configured(a), configured(b)]);
      for (const [up, plan] of [
        [upA, NODE_A],
        [upB, NODE_B],
      ] as const) {
        expect(serialLines(up.serial), up.context).toContain(`psyopsOS: postboot finished status=ok hostname=${plan.name} config=1 secret=mounted-ro`);
        expect(up.status, up.context).toMatchObject({
          status: 'ok',
          hostname: plan.name,
          config: { version: 1, source: 'site', signature: 'verified' },
          problems: [],
        });
      }
      expect(upA.status.steps.find((step) => step.name === 'psynet')?.reason, upA.context).toMatch(/^nebula started as lighthouse on port 4242/);
      expect(upB.status.steps.find((step) => step.name === 'psynet')?.reason, upB.context).toMatch(/^nebula started; 1 lighthouse/);

      const context = `${upA.context}\n\n${upB.context}`;
      const onA = (command: string) => ssh({ port: a.ports.ssh, hostKeyAlias: NODE_A.name, knownHosts: ws.knownHosts, agentSocket: agent.socket, command });
      expect(await onA('hostname'), context).toMatchObject({ exitCode: 0, stdout: NODE_A.name });

      // The first packet: node-b registers with the lighthouse, which then knows its underlay address (bounded: 120 pings of 1 s).
      const addressB = ws.psynetAddresses[NODE_B.name]!;
      const reached = await onA(`i=0; until ping -c 1 -W 1 ${addressB} >/dev/null 2>&1; do i=$((i + 1)); [ $i -ge 120 ] && exit 1; done; echo $i`);
      expect(reached, context).toMatchObject({ exitCode: 0 });

      // node-a's own OpenSSH client, the operator key through the forwarded agent, node-b's host key from known_hosts (by psynet address).
      const overPsynet = await onA(
        `ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=30 root@${addressB} 'hostname; cat /etc/psyopsOS/status.json'`,
      );
      expect(overPsynet, context).toMatchObject({ exitCode: 0 });
      const [hostnameB, ...statusLines] = overPsynet.stdout.split('\n');
      expect(hostnameB).toBe(NODE_B.name);
      expect(JSON.parse(statusLines.join('\n'))).toEqual(upB.status);
      // The login came through the overlay: node-b sees node-a's psynet address as its client.
      const peer = await onA(`ssh -o BatchMode=yes -o StrictHostKeyChecking=yes root@${addressB} 'echo $SSH_CLIENT'`);
      expect(peer.stdout.split(' ')[0], context).toBe(ws.psynetAddresses[NODE_A.name]);

      const telepathy = await telepathyStatus(b.ports.telepathy);
      expect(telepathy.status, context).toBe(200);
      expect(telepathy.headers.get('content-type')).toMatch(/^application\/json/);
      expect(await telepathy.json()).toEqual(upB.status);
    } finally {
      agent.stop();
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  it('node-c, whose config asks for a service and a k3s agent the image lacks, boots degraded and says why', async () => {
    const c = await boot(NODE_C);
    try {
      const { serial, status, context } = await configured(c);
      expect(serialLines(serial), context).toContain(`psyopsOS: postboot finished status=degraded hostname=${NODE_C.name} config=1 secret=mounted-ro`);
      expect(status, context).toMatchObject({ status: 'degraded', k3s: 'not-installed', config: { version: 1, source: 'site', signature: 'verified' } });
      expect(status.problems, context).toEqual([
        expect.stringMatching(/^config: version 1 applied \(signature verified\); service postgresql is not installed$/),
        'k3s: k3s is not installed in this image (config for k3s agent written)',
      ]);
      // The k3s token is decrypted on the node but never logged.
      expect(serial, context).not.toContain(K3S_TOKEN);
    } finally {
      await c.stop();
    }
  });
});
