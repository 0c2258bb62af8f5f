/** Reading and rewriting `lib/apk/db/installed` one package block at a time, leaving the others byte for byte. */

import { readTar } from '@psyops/apkpkg/format';

/** The package blocks of the installed database, each without its ending blank line. */
export function installedBlocks(text: string): string[] {
  return text.split('\n\n').filter((block) => block.trim() !== '');
}

/** The `P:` name of a block. */
export function blockName(block: string): string | undefined {
  return /^P:(.*)$/m.exec(block)?.[1];
}

/** The names of the installed packages. */
export function installedPackageNames(text: string): Set<string> {
  return new Set(
    installedBlocks(text)
      .map(blockName)
      .filter((name): name is string => name !== undefined),
  );
}

/** The database with the block of package `name` replaced by `block` (as formatInstalledDb writes it: ends with a blank line). */
export function replaceInstalledBlock(text: string, name: string, block: string): string {
  const replacement = block.replace(/\n+$/, '');
  const blocks = installedBlocks(text);
  const at = blocks.findIndex((b) => blockName(b) === name);
  if (at === -1) blocks.push(replacement);
  else blocks[at] = replacement;
  return blocks.map((b) => `${b}\n\n`).join('');
}

const BLOCK = 512;

/**
 * `lib/apk/db/scripts.tar` with the entries of one package (`<name>-<version>.<identity>.<script>`)
 * replaced: those starting with `oldPrefix` dropped, `added` (a tar as formatScriptsTar writes it,
 * end blocks included) appended, then the two end blocks. Other packages' entries stay byte for byte.
 */
export function replaceScriptsEntries(tar: Buffer, oldPrefix: string, added: Buffer): Buffer {
  // Each entry's bytes from its first header (pax ones included) to its padded end.
  const kept = readTar(tar)
    .entries.filter((entry) => !entry.path.startsWith(oldPrefix))
    .map((entry) => tar.subarray(entry.offset, entry.end));
  const body = added.subarray(0, added.length - 2 * BLOCK);
  return Buffer.concat([...kept, body, Buffer.alloc(2 * BLOCK)]);
}
