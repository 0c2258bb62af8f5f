/**
 * GRUB's environment block (`grubenv`, read by `load_env`, written by `save_env` and
 * grub-editenv): the header line, `name=value` lines (`\` and newline escaped with `\`; lines starting with `#` are comments), then `#`
 * up to exactly 1024 bytes, GRUB's fixed block size (grub-core/lib/envblk.c). GRUB rewrites the
 * file in place and refuses a block of another size, so every writer keeps the size.
 */
import { PsyopsError } from './errors.js';

export const GRUBENV_SIZE = 1024;
const HEADER = '# GRUB Environment Block\n';

/** The bytes are not a GRUB environment block, or the variables do not fit in one. */
export class GrubEnvError extends PsyopsError {
  override readonly code = 'BAD_GRUBENV';
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The variables of a block, in file order. */
export function parseGrubEnv(block: Uint8Array): Map<string, string> {
  const text = Buffer.from(block).toString('latin1');
  if (block.length !== GRUBENV_SIZE || !text.startsWith(HEADER)) {
    throw new GrubEnvError(`not a GRUB environment block (${block.length} bytes; GRUB's are ${GRUBENV_SIZE} bytes starting "${HEADER.trim()}")`);
  }
  const variables = new Map<string, string>();
  let at = HEADER.length;
  while (at < text.length) {
    // A line starting with `#` is a comment (grub-editenv writes a warning line); so is the padding.
    if (text[at] === '#') {
      const end = text.indexOf('\n', at);
      at = end === -1 ? text.length : end + 1;
      continue;
    }
    let line = '';
    while (at < text.length && text[at] !== '\n') {
      if (text[at] === '\\' && at + 1 < text.length) at++;
      line += text[at++];
    }
    at++;
    const equals = line.indexOf('=');
    if (equals > 0) variables.set(line.slice(0, equals), line.slice(equals + 1));
  }
  return variables;
}

/** A block holding `variables` (in their order), padded to GRUB's 1024 bytes. */
export function formatGrubEnv(variables: ReadonlyMap<string, string> | Record<string, string>): Buffer {
  const entries = variables instanceof Map ? [...variables] : Object.entries(variables);
  let text = HEADER;
  for (const [name, value] of entries) {
    if (!NAME.test(name)) throw new GrubEnvError(`bad GRUB variable name ${JSON.stringify(name)}`);
    text += `${name}=${value.replace(/[\\\n]/g, (c: string) => `\\${c}`)}\n`;
  }
  const bytes = Buffer.from(text, 'latin1');
  if (bytes.length > GRUBENV_SIZE) throw new GrubEnvError(`GRUB variables take ${bytes.length} bytes; the block holds ${GRUBENV_SIZE}`);
  return Buffer.concat([bytes, Buffer.alloc(GRUBENV_SIZE - bytes.length, '#')]);
}
