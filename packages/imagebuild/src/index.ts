/**
 * @psyops/imagebuild: from APK repositories and an overlay to a bootable, signed, reproducible
 * psyopsOS image, on any Linux host, without root, Docker or an Alpine system.
 */
export { requireTools, requireHostFile, runTool, HOST_TOOLS, HOST_FILES } from './tools.js';
export type { HostTool, HostFile, RunOptions } from './tools.js';
export { MissingToolError, ToolFailedError, ImageConfigError } from './errors.js';
