import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatGrubEnv, GRUBENV_SIZE, GrubEnvError, parseGrubEnv } from '../src/index.js';

// grub-editenv (Debian grub-common) is GRUB's own writer and reader of the block.
const dir = mkdtempSync(join(tmpdir(), 'grubenv-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const editenv = (...args: string[]) => execFileSync('grub-editenv', args, { encoding: 'utf8' });

describe('GRUB environment block', () => {
  it('reads what grub-editenv writes, escapes included', () => {
    const file = join(dir, 'written-by-grub');
    editenv(file, 'create');
    editenv(file, 'set', 'psyops_good=B', 'psyops_try=', 'odd=a\\b');
    const block = readFileSync(file);
    expect(block.length).toBe(GRUBENV_SIZE);
    expect([...parseGrubEnv(block)]).toEqual([
      ['psyops_good', 'B'],
      ['psyops_try', ''],
      ['odd', 'a\\b'],
    ]);
  });

  it('writes a block grub-editenv lists and edits', () => {
    const file = join(dir, 'written-by-us');
    writeFileSync(file, formatGrubEnv({ psyops_good: 'A', psyops_try: 'B', back: 'x\\y' }));
    expect(editenv(file, 'list')).toBe('psyops_good=A\npsyops_try=B\nback=x\\y\n');
    editenv(file, 'unset', 'psyops_try');
    expect(Object.fromEntries(parseGrubEnv(readFileSync(file)))).toEqual({ psyops_good: 'A', back: 'x\\y' });
  });

  it('refuses what is not a block and variables that do not fit', () => {
    expect(() => parseGrubEnv(Buffer.alloc(1024, '#'))).toThrow(GrubEnvError);
    expect(() => parseGrubEnv(formatGrubEnv({}).subarray(0, 512))).toThrow(/1024 bytes/);
    expect(() => formatGrubEnv({ big: 'x'.repeat(1000) })).toThrow(/take 1030 bytes/);
    expect(() => formatGrubEnv({ 'bad name': 'x' })).toThrow(GrubEnvError);
  });
});
