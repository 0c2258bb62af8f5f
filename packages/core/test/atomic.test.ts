import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeFilesAtomically } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'psyops-atomic-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('writeFilesAtomically', () => {
  it('writes every file with its mode, creating parents', async () => {
    await writeFilesAtomically([
      { path: join(dir, 'a', 'secret'), data: 'key', mode: 0o600 },
      { path: join(dir, 'a', 'public'), data: new Uint8Array([104, 105]) },
    ]);
    expect(readFileSync(join(dir, 'a', 'secret'), 'utf8')).toBe('key');
    expect(statSync(join(dir, 'a', 'secret')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, 'a', 'public'), 'utf8')).toBe('hi');
    expect(statSync(join(dir, 'a', 'public')).mode & 0o777).toBe(0o644);
  });

  it('when one file cannot be written, changes none and leaves no temporary file', async () => {
    writeFileSync(join(dir, 'existing'), 'old');
    writeFileSync(join(dir, 'blocker'), 'a file where a directory would have to be');
    await expect(
      writeFilesAtomically([
        { path: join(dir, 'existing'), data: 'new' },
        { path: join(dir, 'blocker', 'impossible'), data: 'x' },
      ]),
    ).rejects.toThrow();
    expect(readFileSync(join(dir, 'existing'), 'utf8')).toBe('old');
    expect(readdirSync(dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
    expect(existsSync(join(dir, 'blocker', 'impossible'))).toBe(false);
  });
});
