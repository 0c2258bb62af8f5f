import { PsyopsError } from '@psyops/core';

/** The --inventory file cannot be read or is not `{"nodes":{"<name>":{"host",…}}}`. */
export class InventoryError extends PsyopsError {
  override readonly code = 'BAD_INVENTORY';
}

/** A node has no address to reach it at (no psynetAddress recorded, no inventory entry). */
export class NodeAddressError extends PsyopsError {
  override readonly code = 'NO_NODE_ADDRESS';
}

/** ssh itself failed: the connection, authentication, or the time limit. */
export class SshError extends PsyopsError {
  override readonly code = 'SSH_FAILED';
}

/** The command on the node ran and failed (its own one-line error is in the message). */
export class NodeCommandError extends PsyopsError {
  override readonly code = 'NODE_COMMAND_FAILED';
}

/** At least one node could not be reached (fleet status). */
export class NodeUnreachableError extends PsyopsError {
  override readonly code = 'NODE_UNREACHABLE';
}

/** A fleet update stopped: a node did not end ok on the target release. */
export class FleetUpdateError extends PsyopsError {
  override readonly code = 'FLEET_UPDATE_FAILED';
}
