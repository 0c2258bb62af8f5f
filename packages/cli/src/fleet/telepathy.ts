import { lastLine, runSsh, type SshOptions } from './ssh.js';
import type { FleetNode } from './targets.js';

/** The fields of a node's status.json (postboot) the fleet commands read. */
export interface NodeStatusSummary {
  hostname: string | null;
  release: string | null;
  slot: string | null;
  trial: boolean;
  rollback: { slot?: string; version?: string; reason?: string } | null;
  configVersion: number | null;
  status: string | null;
  problems: string[];
  finishedAt: string | null;
}

export type StatusProbe = { reachable: true; status: NodeStatusSummary } | { reachable: false; error: string };

const text = (value: unknown): string | null => (typeof value === 'string' ? value : null);

/** Reads what fleet needs from a status.json; anything missing or of another type reads as null. */
export function summarizeStatus(value: unknown): NodeStatusSummary {
  const doc = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const config = (typeof doc.config === 'object' && doc.config !== null ? doc.config : {}) as Record<string, unknown>;
  const rollback = typeof doc.rollback === 'object' && doc.rollback !== null ? (doc.rollback as Record<string, unknown>) : null;
  return {
    hostname: text(doc.hostname),
    release: text(doc.release),
    slot: text(doc.slot),
    trial: doc.trial === true,
    rollback: rollback
      ? {
          ...(text(rollback.slot) !== null ? { slot: text(rollback.slot)! } : {}),
          ...(text(rollback.version) !== null ? { version: text(rollback.version)! } : {}),
          ...(text(rollback.reason) !== null ? { reason: text(rollback.reason)! } : {}),
        }
      : null,
    configVersion: typeof config.version === 'number' ? config.version : null,
    status: text(doc.status),
    problems: Array.isArray(doc.problems) ? doc.problems.filter((p): p is string => typeof p === 'string') : [],
    finishedAt: text(doc.finishedAt),
  };
}

const MAX_STATUS_BYTES = 1024 * 1024;

/** The one-line reason a fetch failed: the system's code (ECONNREFUSED…) where there is one. */
function fetchProblem(error: unknown, timeoutMs: number): string {
  const err = error as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return `no answer within ${timeoutMs / 1000} s`;
  return err.cause?.code ?? err.cause?.message ?? err.message ?? String(error);
}

/** The URL of a node's telepathy status (on the node itself when it is asked through SSH). */
export function statusUrl(node: FleetNode): string {
  if (node.telepathyVia === 'ssh') return `http://127.0.0.1:${node.telepathyPort}/status`;
  const host = node.host.includes(':') ? `[${node.host}]` : node.host;
  return `http://${host}:${node.telepathyPort}/status`;
}

/** What telepathy answered: its status, or why the answer is not one. */
function statusFromAnswer(url: string, answer: { ok: boolean; httpStatus?: number; body: string }): StatusProbe {
  const { body } = answer;
  if (body.length > MAX_STATUS_BYTES) return { reachable: false, error: `${url}: answer larger than ${MAX_STATUS_BYTES} bytes` };
  if (!answer.ok) {
    let detail = '';
    try {
      detail = String((JSON.parse(body) as { error?: unknown }).error ?? '');
    } catch {
      detail = '';
    }
    return { reachable: false, error: `${url}: ${answer.httpStatus !== undefined ? `HTTP ${answer.httpStatus}` : 'no status'}${detail ? ` (${detail})` : ''}` };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return { reachable: false, error: `${url}: the answer is not JSON` };
  }
  return { reachable: true, status: summarizeStatus(parsed) };
}

/**
 * `GET /status` from the node's telepathy, bounded by `timeoutMs`; never throws. Through SSH
 * (`telepathyVia: "ssh"`) the node's busybox wget asks it on 127.0.0.1.
 */
export async function probeStatus(node: FleetNode, timeoutMs: number, ssh: Omit<SshOptions, 'timeoutMs'> = {}): Promise<StatusProbe> {
  const url = statusUrl(node);
  if (node.telepathyVia === 'ssh') {
    try {
      const result = await runSsh(node, `wget -q -O - ${url}`, { ...ssh, timeoutMs });
      if (result.exitCode !== 0) return { reachable: false, error: `${url} through ssh: ${lastLine(result.stderr) || `exit ${result.exitCode}`}` };
      return statusFromAnswer(url, { ok: true, body: result.stdout });
    } catch (error) {
      return { reachable: false, error: `${url} through ssh: ${(error as Error).message}` };
    }
  }
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json' } });
    return statusFromAnswer(url, { ok: response.ok, httpStatus: response.status, body: await response.text() });
  } catch (error) {
    return { reachable: false, error: `${url}: ${fetchProblem(error, timeoutMs)}` };
  }
}
