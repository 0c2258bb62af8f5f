import { setTimeout as sleep } from 'node:timers/promises';
import { NodeCommandError } from './errors.js';
import { runSsh, sshFailure, SSH_OWN_FAILURE, type SshOptions } from './ssh.js';
import { probeStatus } from './telepathy.js';
import type { FleetNode } from './targets.js';
import type { FleetTransport, NodeUpdateAnswer } from './update.js';

const ACTIONS = new Set(['updated', 'up-to-date', 'available']);

/** The JSON object `psyops-node update --json` printed (its last line that is one), or undefined. */
export function parseUpdateAnswer(stdout: string): NodeUpdateAnswer | undefined {
  for (const line of stdout.split(/\r?\n/).reverse()) {
    if (!line.trim().startsWith('{')) continue;
    try {
      const value = JSON.parse(line) as Partial<NodeUpdateAnswer>;
      if (typeof value.action === 'string' && ACTIONS.has(value.action)) return value as NodeUpdateAnswer;
    } catch {
      // not the answer
    }
  }
  return undefined;
}

/** The remote command; `version` is checked by the caller to be a release tag (no shell characters). */
export function nodeUpdateCommand(version: string | undefined): string {
  return `psyops-node update --json --reboot${version !== undefined ? ` --version ${version}` : ''}`;
}

/** The transport of the real thing: telepathy over HTTP, `psyops-node update` over SSH. */
export function networkTransport(options: { ssh: Omit<SshOptions, 'timeoutMs'>; updateTimeoutMs: number; statusTimeoutMs: number }): FleetTransport {
  return {
    status: (node: FleetNode) => probeStatus(node, options.statusTimeoutMs, options.ssh),
    async update(node, version) {
      const command = nodeUpdateCommand(version);
      const result = await runSsh(node, command, { ...options.ssh, timeoutMs: options.updateTimeoutMs });
      const answer = parseUpdateAnswer(result.stdout);
      // The node reboots right after it answers: the session may end with ssh's 255 then.
      if (answer && (result.exitCode === 0 || (result.exitCode === SSH_OWN_FAILURE && answer.action === 'updated'))) return answer;
      if (result.exitCode === 0) throw new NodeCommandError(`${node.name}: ${command} printed no answer`);
      throw sshFailure(node, command, result);
    },
    sleep: (ms) => sleep(ms),
    now: () => Date.now(),
  };
}
