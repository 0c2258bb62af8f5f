/**
 * @psyops/cli: the `psyops` command. Its programmatic surface is small: run the CLI in-process,
 * and find or load a workspace the way every command does.
 */
export { createProgram, runCli, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED } from './program.js';
export {
  findWorkspace,
  loadWorkspace,
  parseConfig,
  defaultConfig,
  configSchema,
  CONFIG_FILE,
  SCHEMA_FILE,
  WORKSPACE_ENV,
  NoWorkspaceError,
  ConfigError,
  WorkspaceExistsError,
} from './workspace.js';
export type { Workspace, WorkspaceConfig } from './workspace.js';
