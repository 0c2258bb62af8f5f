import { execFile } from 'node:child_process';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { STATE_LABEL, writeStateImage } from '../src/index.js';
import { tempDir } from './fixtures.js';

const run = promisify(execFile);

describe('state image', () => {
  it('is an empty ext4 file system labelled psyops-state, 0600, of the size asked for', async () => {
    const dir = tempDir('stateimage');
    const image = join(dir, 'state.img');
    await writeStateImage(image, { sizeMiB: 4 });
    expect(statSync(image).size).toBe(4 * 1024 * 1024);
    expect(statSync(image).mode & 0o777).toBe(0o600);
    const { stdout } = await run('/sbin/dumpe2fs', ['-h', image], { timeout: 30_000 });
    expect(stdout).toMatch(new RegExp(`^Filesystem volume name:\\s+${STATE_LABEL}$`, 'm'));
    expect(stdout).toMatch(/^Filesystem features:.*has_journal/m);
    expect(readdirSync(dir)).toEqual(['state.img']); // no temp file left beside it
  });

  it('never replaces an existing file without force, and refuses a size below ext4 minimum', async () => {
    const dir = tempDir('stateimage');
    const image = join(dir, 'state.img');
    writeFileSync(image, 'keep me');
    await expect(writeStateImage(image)).rejects.toThrow(/refusing to overwrite .*state\.img \(use -f/);
    await expect(writeStateImage(join(dir, 'small.img'), { sizeMiB: 1 })).rejects.toThrow(/from 2 to/);
    expect(readdirSync(dir)).toEqual(['state.img']);
    await writeStateImage(image, { force: true });
    expect(statSync(image).size).toBe(16 * 1024 * 1024);
  });
});

describe('finding a volume by label (LinuxSystem reads the superblock, as findfs does)', () => {
  it('reads the label of an ext4 file system, and nothing from anything else', async () => {
    const { ext4Label } = await import('../src/system.js');
    const dir = tempDir('labels');
    await writeStateImage(join(dir, 'state.img'), { sizeMiB: 2 });
    expect(ext4Label(join(dir, 'state.img'))).toBe(STATE_LABEL);
    // A label of the full 16 bytes has no terminating NUL.
    await run('/sbin/mkfs.ext4', ['-q', '-F', '-L', 'sixteen-chars-ok', join(dir, 'long.img'), '2M'], { timeout: 30_000 });
    expect(ext4Label(join(dir, 'long.img'))).toBe('sixteen-chars-ok');
    await run('/sbin/mkfs.ext4', ['-q', '-F', join(dir, 'nolabel.img'), '2M'], { timeout: 30_000 });
    expect(ext4Label(join(dir, 'nolabel.img'))).toBe('');
    writeFileSync(join(dir, 'zeros.img'), Buffer.alloc(4096));
    expect(ext4Label(join(dir, 'zeros.img'))).toBeUndefined();
    expect(ext4Label(join(dir, 'missing.img'))).toBeUndefined();
  });
});
