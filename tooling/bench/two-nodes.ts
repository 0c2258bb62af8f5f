import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { serveSite } from '@psyops/siteapi';
import { execa, type ResultPromise } from 'execa';
import { buildDefaultImage } from '../e2e/harness.ts';
import { createPsynetWorkspace, NODE_A, NODE_B, ssh, sshClientOptions, startAgent, startNode, uniqueLinkName } from '../e2e/psynet-nodes.ts';
import { median } from './measure.ts';

const BOOT_TIMEOUT_MS = 10 * 60_000;
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/**
 * One SSH connection kept open as a control master (a child process of ours, ended by its PID), and
 * `rounds` commands through it: each a channel opened, `true` run on the node, its exit status back —
 * a round trip over whatever carries the connection.
 */
async function roundTrips(dir: string, name: string, connect: string[], rounds: number): Promise<number[]> {
  const socket = join(dir, `${name}.ctl`);
  const master: ResultPromise = execa('ssh', ['-M', '-S', socket, '-N', ...connect], { reject: false, timeout: BOOT_TIMEOUT_MS, stdio: 'ignore' });
  let masterEnded = false;
  void master.then(() => {
    masterEnded = true;
  });
  try {
    const deadline = Date.now() + 180_000;
    while ((await execa('ssh', ['-S', socket, '-O', 'check', 'node'], { reject: false, timeout: 10_000 })).exitCode !== 0) {
      if (Date.now() > deadline || masterEnded) throw new Error(`psynet bench: the SSH connection "${name}" did not open`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const times: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const began = performance.now();
      await execa('ssh', ['-S', socket, 'node', 'true'], { timeout: 60_000 });
      times.push(performance.now() - began);
    }
    return times;
  } finally {
    master.kill();
  }
}

/**
 * Two nodes from the default image, node-a a psynet lighthouse, node-b a node, on one L2 link (as
 * the psynet e2e test sets them up), booted at once under TCG: seconds from QEMU start until each
 * is configured and until the first packet crosses psynet (node-a pings node-b's psynet address
 * until it answers; host clock when the answer is seen through SSH). Then the SSH round trip to
 * node-b — one connection each, `rounds` commands through it — over psynet (a connection from the
 * host relayed by node-a's sshd to node-b's psynet address) against over QEMU's forward of node-b's
 * sshd to the host: the ratio is what the overlay costs on top of the same guest.
 */
export async function benchPsynetNodes(rounds = 20): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'psyops-bench-psynet-'));
  try {
    const { iso } = await buildDefaultImage(dir);
    const ws = await createPsynetWorkspace(dir, [NODE_A, NODE_B]);
    const server = await serveSite({ root: ws.siteDir });
    const agent = await startAgent(dir, ws.operatorKey);
    try {
      const link = uniqueLinkName();
      const started = performance.now();
      const boot = (plan: typeof NODE_A) =>
        startNode({
          iso,
          plan,
          secretImage: ws.secretImages[plan.name]!,
          sitePort: server.port,
          link,
          serialLog: join(dir, `${plan.name}.log`),
          timeoutMs: BOOT_TIMEOUT_MS,
        });
      const [a, b] = [await boot(NODE_A), await boot(NODE_B)];
      try {
        const [upA, upB] = await Promise.all([a.configured, b.configured]);
        const addressB = ws.psynetAddresses[NODE_B.name]!;
        const ping = await ssh({
          port: a.ports.ssh,
          hostKeyAlias: NODE_A.name,
          knownHosts: ws.knownHosts,
          agentSocket: agent.socket,
          command: `i=0; until ping -c 1 -W 1 ${addressB} >/dev/null 2>&1; do i=$((i + 1)); [ $i -ge 120 ] && exit 1; done`,
        });
        if (ping.exitCode !== 0) throw new Error(`psynet bench: node-a never reached node-b over psynet: ${ping.stderr}`);
        const firstPacket = performance.now() - started;

        const client = (hostKeyAlias?: string) =>
          sshClientOptions({ knownHosts: ws.knownHosts, identity: ws.operatorKey, ...(hostKeyAlias ? { hostKeyAlias } : {}) });
        const viaA = `ssh ${client(NODE_A.name).join(' ')} -p ${a.ports.ssh} -W %h:%p root@127.0.0.1`;
        const overPsynet = await roundTrips(dir, 'psynet', [...client(), '-o', `ProxyCommand=${viaA}`, `root@${addressB}`], rounds);
        const overForward = await roundTrips(dir, 'forward', [...client(NODE_B.name), '-p', String(b.ports.ssh), 'root@127.0.0.1'], rounds);
        const psynetMs = median(overPsynet);
        const forwardMs = median(overForward);
        console.log(
          `psynet two nodes (TCG): QEMU start to configured: node-a (lighthouse) ${seconds(upA.atMs)}, node-b ${seconds(upB.atMs)}; ` +
            `first packet over psynet ${seconds(firstPacket)}; ` +
            `SSH round trip to node-b (median of ${rounds}): over psynet through node-a ${psynetMs.toFixed(0)} ms, over the QEMU forward ${forwardMs.toFixed(0)} ms, ratio ${(psynetMs / forwardMs).toFixed(2)}`,
        );
      } finally {
        await Promise.all([a.stop(), b.stop()]);
      }
    } finally {
      agent.stop();
      await server.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// Run alone: `npx tsx bench/two-nodes.ts [rounds]` from tooling/.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await benchPsynetNodes(Number(process.argv[2] ?? 20));
