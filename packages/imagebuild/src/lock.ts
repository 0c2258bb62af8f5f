/**
 * Exclusive directory locks for a whole build, so two builds of one workspace never delete or
 * half-read each other's stages and outputs. A lock is a file created with `open(…, 'wx')`
 * (atomic: exactly one creator wins) holding its owner's PID, host and process start time. A
 * lock whose process no longer runs (or whose PID now belongs to a later process) is taken over.
 *
 * Why not flock(2) or proper-lockfile: Node has no flock, and proper-lockfile judges staleness by
 * an mtime it keeps refreshing on a timer, which a long synchronous step (inflating, hashing) can
 * starve; a PID check answers "is the holder alive?" directly.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PsyopsError } from '@psyops/core';

/** The lock file in a cache directory and in an output directory (different, so one directory may be both). */
export const CACHE_LOCK = '.psyops-cache.lock';
export const OUTPUT_LOCK = '.psyops-output.lock';

/** Another live process holds the lock (and waiting for it was not asked for, or timed out). */
export class DirectoryLockedError extends PsyopsError {
  override readonly code = 'DIRECTORY_LOCKED';
}

export interface LockOwner {
  pid: number;
  host: string;
  /** Boot id and start time of the process: a PID reused after the holder died does not count as the holder. */
  started?: string;
  /** Since when (ISO date). */
  since: string;
  /** Tells this lock from a later one with the same PID. */
  token: string;
}

export interface LockOptions {
  /** How long to wait for a live holder to finish before failing (default 0: fail at once). */
  waitMs?: number;
  /** How often to look again while waiting (default 500 ms). */
  pollMs?: number;
  /** Called once when the lock is held by a live process and waiting begins. */
  onWait?: (owner: LockOwner, lockFile: string) => void;
  signal?: AbortSignal;
}

export interface DirectoryLock {
  file: string;
  /** Removes the lock file if it is still this lock's. */
  release(): Promise<void>;
}

/** Takes the lock file `name` in `dir` (created if missing), waiting for a live holder up to `waitMs`. */
export async function lockDirectory(dir: string, name: string, options: LockOptions = {}): Promise<DirectoryLock> {
  const file = join(dir, name);
  await mkdir(dir, { recursive: true });
  const me: LockOwner = { pid: process.pid, host: hostname(), since: new Date().toISOString(), token: randomBytes(8).toString('hex') };
  const started = processStart(process.pid);
  if (started) me.started = started;
  const deadline = Date.now() + (options.waitMs ?? 0);
  let waiting = false;
  let unreadable = 0;
  for (;;) {
    options.signal?.throwIfAborted();
    if (await tryCreate(file, me)) return { file, release: () => releaseLock(file, me.token) };
    const owner = await readOwner(file);
    if (owner === 'gone') continue; // released between our attempt and our look
    if (owner === 'unreadable') {
      // A creator writes its owner right after creating the file: only a lock still unreadable a moment later is junk.
      if (++unreadable < 3) {
        await sleep(50, undefined, { signal: options.signal });
        continue;
      }
      await takeOver(file, undefined);
      continue;
    }
    unreadable = 0;
    if (!isRunning(owner)) {
      await takeOver(file, owner.token);
      continue;
    }
    if (Date.now() >= deadline) {
      const waitMs = options.waitMs ?? 0;
      const waited = waiting ? `, waited ${waitMs < 60_000 ? `${(waitMs / 1000).toFixed(1)} s` : `${Math.round(waitMs / 60_000)} min`}` : '';
      throw new DirectoryLockedError(
        `${dir} is in use by another build (pid ${owner.pid} on ${owner.host} since ${owner.since}, lock ${file})${waited}; if that process is gone, delete the lock file`,
      );
    }
    if (!waiting) options.onWait?.(owner, file);
    waiting = true;
    await sleep(Math.min(options.pollMs ?? 500, Math.max(1, deadline - Date.now())), undefined, { signal: options.signal });
  }
}

async function tryCreate(file: string, me: LockOwner): Promise<boolean> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, 'wx', 0o644);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    await handle.writeFile(`${JSON.stringify(me)}\n`);
  } finally {
    await handle.close();
  }
  return true;
}

async function readOwner(file: string): Promise<LockOwner | 'gone' | 'unreadable'> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw error;
  }
  try {
    const owner = JSON.parse(text) as Partial<LockOwner>;
    if (Number.isInteger(owner.pid) && typeof owner.host === 'string' && typeof owner.token === 'string') return owner as LockOwner;
  } catch {
    // not JSON: handled as unreadable below
  }
  return 'unreadable';
}

/** Whether the lock's process still runs. A lock from another host cannot be checked, so it counts as held. */
function isRunning(owner: LockOwner): boolean {
  if (owner.host !== hostname()) return true;
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    // EPERM: it runs, as another user
  }
  const started = owner.started === undefined ? undefined : processStart(owner.pid);
  return started === undefined || started === owner.started;
}

/**
 * Removes a stale lock without ever removing a live one: the file is first renamed aside (only
 * one contender can), then checked to be the lock judged stale; if a live process took the lock
 * in between, that lock is put back.
 */
async function takeOver(file: string, staleToken: string | undefined): Promise<void> {
  const aside = `${file}.stale-${randomBytes(6).toString('hex')}`;
  try {
    await rename(file, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // another contender was faster
    throw error;
  }
  const moved = await readOwner(aside);
  const isStaleOne = staleToken === undefined ? moved === 'unreadable' : typeof moved === 'object' && moved.token === staleToken;
  // link, not rename: it fails rather than replace a lock a third process created meanwhile.
  if (!isStaleOne) await link(aside, file).catch(() => undefined);
  await unlink(aside).catch(() => undefined);
}

async function releaseLock(file: string, token: string): Promise<void> {
  const owner = await readOwner(file);
  if (typeof owner === 'object' && owner.token === token) await unlink(file).catch(() => undefined);
}

/** `<boot id>:<start time in clock ticks>` of a process (Linux /proc), or undefined where that is not available. */
function processStart(pid: number): string | undefined {
  try {
    const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command (which may hold spaces and parentheses): state is field 3, starttime field 22.
    const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    return startTime ? `${bootId}:${startTime}` : undefined;
  } catch {
    return undefined;
  }
}
