/**
 * @psyops/nodeboot: what runs on a psyopsOS node at boot (the secret volume, individuation,
 * network, psynet, the signed node config, k3s, status) and the host side that creates a node
 * and its volumes.
 */
export { createNode, NodeExistsError, readNodeLighthouses } from './node-create.js';
export type { CreateNodeOptions, CreatedNode, NodeRole, NodeLighthouse } from './node-create.js';
export { readKnownHosts, knownHostsLine } from './known-hosts.js';
export type { KnownHost } from './known-hosts.js';
export { writeStateImage } from './state-volume.js';
export type { StateImageOptions } from './state-volume.js';
export { SECRET_LABEL, STATE_LABEL } from './secret-volume.js';
export { runPostboot, POSTBOOT_EXIT } from './postboot.js';
export type { PostbootOptions, PostbootResult } from './postboot.js';
export { NODE_PATHS } from './postboot/context.js';
export { readNodeStatus } from './status.js';
export type { NodeStatus, StepStatus, StepName, StepResult } from './status.js';
export { LinuxSystem } from './system.js';
export type { NodeSystem, CommandResult, FetchResult, NetworkInterface } from './system.js';
export { TempRootSystem } from './temp-root-system.js';
export type { TempRootSystemOptions, RecordedEffect } from './temp-root-system.js';
export { NodeInputError, NodeNotFoundError, NodeDefinitionError } from './errors.js';
