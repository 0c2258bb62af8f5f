/**
 * @psyops/core: the ground floor every psyops package stands on. Typed errors, file access that
 * names the file, atomic file and directory writes, file hashing, the ELF reader and the runner
 * for external programs. No dependencies beyond Node.js.
 */
export { PsyopsError, FileAccessError, MissingToolError, ToolFailedError, ElfFormatError } from './errors.js';
export type { FileErrorCode } from './errors.js';
export { fileAccessError, assertReadableFile, readRegularFile, readTextIfExists, forEachChunk } from './files.js';
export { writeFilesAtomically, produceFileAtomically, produceDirectoryAtomically, tempPathBeside } from './atomic.js';
export type { FileToWrite } from './atomic.js';
export { sha256File } from './hash.js';
export { isElf, elfInterpreter, elfSection } from './elf.js';
export { findProgram, requireProgram, runTool } from './tools.js';
export type { RunToolOptions } from './tools.js';
export { compareReleases } from './release.js';
export { parseGrubEnv, formatGrubEnv, GrubEnvError, GRUBENV_SIZE } from './grubenv.js';
