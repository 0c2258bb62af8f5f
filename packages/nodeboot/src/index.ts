/**
 * @psyops/nodeboot: what runs on a psyopsOS node at boot (the secret volume, individuation,
 * network, psynet, the signed node config, k3s, status) and the host side that creates a node's
 * secret volume.
 */
export { SECRET_LABEL, SECRET_FILES, NODE_INTERFACE, TESTONLY_TOOR_VARIABLE, DEFAULT_INTERFACES, checkNodeName, normalizeMac, readSecretVolume } from './secret-volume.js';
export type { SecretVolume } from './secret-volume.js';
export { checkNodeSecretsInput, generateNodeSecrets, assertOutputFree, writeSecretDir, writeSecretImage } from './node-create.js';
export type { SecretFile, NodeSecretsInput, NodeSecrets } from './node-create.js';
export { decryptAge, ageRecipientOf } from './age-decrypt.js';
export { STATE_LABEL, writeStateImage } from './state-volume.js';
export type { StateImageOptions } from './state-volume.js';
export { generateSshHostKey, sshPublicKeyOf } from './ssh.js';
export type { SshHostKey } from './ssh.js';
export { nodeNebulaConfig } from './nebula.js';
export type { NodeNebulaConfigOptions } from './nebula.js';
export { runPostboot, NODE_PATHS, POSTBOOT_EXIT } from './postboot.js';
export type { PostbootOptions, PostbootResult, NodeStatus, StepStatus, StepName, StepResult } from './postboot.js';
export { readNodeStatus } from './status.js';
export { LinuxSystem, RootedSystem } from './system.js';
export type { NodeSystem, CommandResult, FetchResult, NetworkInterface } from './system.js';
export { TempRootSystem } from './temp-root-system.js';
export type { TempRootSystemOptions, RecordedEffect } from './temp-root-system.js';
export { NodeInputError, SecretVolumeError, NodeConfigRejectedError, SiteUnreachableError, AgeDecryptError } from './errors.js';
/** The node configuration document (`nodes/<name>.json` on the site) and its workspace source. */
export { nodeConfigSchema, nodeDefinitionSchema, encryptedSecretSchema, plainSecretSchema } from '@psyops/siteapi/schemas';
export type { NodeConfig, NodeDefinition } from '@psyops/siteapi/schemas';
