import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { recoverInterruptedPublish } from '../src/build.js';
import { CACHE_LOCK, DirectoryLockedError, lockDirectory } from '../src/lock.js';

const scratch = mkdtempSync(join(tmpdir(), 'psyops-lock-test-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  rmSync(scratch, { recursive: true, force: true });
});

const HOLDER = join(import.meta.dirname, 'fixtures', 'lock-holder.ts');

/** A separate process that takes the cache lock of `cacheDir` and rebuilds a stage taking `holdMs`. */
function holder(cacheDir: string, log: string, label: string, holdMs: number): { child: ChildProcess; exit: Promise<number | null> } {
  const child = spawn(process.execPath, ['--no-warnings', HOLDER, cacheDir, log, label, String(holdMs)], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return { child, exit: new Promise((resolve) => child.on('exit', (code) => resolve(code))) };
}

const logLines = (log: string) => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []);

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !condition(); waited += 20) {
    if (waited > 20_000) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('build locks', () => {
  it('makes two builds of one cache directory run one after the other', async () => {
    const cacheDir = join(scratch, 'shared');
    const log = join(scratch, 'shared.log');
    const first = holder(cacheDir, log, 'A', 500);
    const second = holder(cacheDir, log, 'B', 500);
    expect(await Promise.all([first.exit, second.exit])).toEqual([0, 0]);
    const lines = logLines(log);
    const order = lines.filter((line) => !line.includes('waits'));
    const [winner, loser] = order[0] === 'A start' ? ['A', 'B'] : ['B', 'A'];
    expect(order).toEqual([`${winner} start`, `${winner} end`, `${loser} start`, `${loser} end`]);
    const winnerPid = (winner === 'A' ? first : second).child.pid;
    expect(lines).toContain(`${loser} waits for ${winnerPid}`);
    expect(readdirSync(join(cacheDir, 'stages'))).toHaveLength(1); // neither build left or lost a half stage
    expect(existsSync(join(cacheDir, CACHE_LOCK))).toBe(false);
  });

  it('fails at once naming the live holder, and takes over the lock of a killed one', async () => {
    const cacheDir = join(scratch, 'killed');
    const log = join(scratch, 'killed.log');
    const running = holder(cacheDir, log, 'A', 60_000);
    await until(() => logLines(log).includes('A start'), 'the holder to start');
    const attempt = lockDirectory(cacheDir, CACHE_LOCK);
    await expect(attempt).rejects.toThrow(DirectoryLockedError);
    await expect(attempt).rejects.toThrow(new RegExp(`^${cacheDir} is in use by another build \\(pid ${running.child.pid} on `));
    running.child.kill('SIGKILL');
    await running.exit;
    const started = performance.now();
    const lock = await lockDirectory(cacheDir, CACHE_LOCK);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(JSON.parse(readFileSync(lock.file, 'utf8'))).toMatchObject({ pid: process.pid });
    await lock.release();
    expect(existsSync(lock.file)).toBe(false);
  });

  it('waits a bounded time for a live holder, saying so once', async () => {
    const dir = join(scratch, 'waiting');
    const held = await lockDirectory(dir, CACHE_LOCK);
    const waits: number[] = [];
    const started = performance.now();
    await expect(lockDirectory(dir, CACHE_LOCK, { waitMs: 300, pollMs: 50, onWait: (owner) => waits.push(owner.pid) })).rejects.toThrow(
      /waited 0\.3 s; if that process is gone, delete the lock file$/,
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
    expect(waits).toEqual([process.pid]);
    const later = lockDirectory(dir, CACHE_LOCK, { waitMs: 10_000, pollMs: 20 });
    await sleep(100);
    await held.release();
    await (await later).release();
  });

  it('does not count a lock whose PID now belongs to a later process, or a garbled one', async () => {
    const dir = join(scratch, 'reused');
    mkdirSync(dir);
    const reused = { pid: process.pid, host: hostname(), started: 'an-earlier-boot:1', since: '2020-01-01T00:00:00Z', token: 'old' };
    writeFileSync(join(dir, CACHE_LOCK), JSON.stringify(reused));
    await (await lockDirectory(dir, CACHE_LOCK)).release();
    writeFileSync(join(dir, CACHE_LOCK), 'not a lock');
    await (await lockDirectory(dir, CACHE_LOCK)).release();
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('publishing outputs', () => {
  it('finishes a set a crashed build left half moved, and drops an unfinished one', async () => {
    const outDir = join(scratch, 'out');
    const names = ['psyopsOS-x.iso', 'psyopsOS-x.iso.minisig', 'psyopsOS-x.json'];
    mkdirSync(join(outDir, '.publish-1234abcd'), { recursive: true });
    mkdirSync(join(outDir, '.build-5678abcd'));
    writeFileSync(join(outDir, '.build-5678abcd', names[0]!), 'half');
    for (const name of names) writeFileSync(join(outDir, name), 'old');
    // The crash came after the manifest was moved: the other two are still in the set.
    writeFileSync(join(outDir, names[2]!), 'new');
    for (const name of names.slice(0, 2)) writeFileSync(join(outDir, '.publish-1234abcd', name), 'new');
    await recoverInterruptedPublish(outDir);
    expect(readdirSync(outDir).sort()).toEqual(names);
    for (const name of names) expect(readFileSync(join(outDir, name), 'utf8')).toBe('new');
  });
});
