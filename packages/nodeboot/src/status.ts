import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileAccessError } from '@psyops/core';
import { NODE_PATHS, type NodeStatus } from './postboot.js';

/** The status postboot wrote on a node whose root is `root` (`/` on the node itself). */
export async function readNodeStatus(root = '/'): Promise<NodeStatus> {
  const path = join(root, NODE_PATHS.status);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw fileAccessError(error, path, 'node status (written by postboot at the end of each boot)');
  }
  return JSON.parse(text) as NodeStatus;
}
