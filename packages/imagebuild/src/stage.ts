/**
 * Stage cache: each stage's output lives in `<cacheDir>/stages/<name>-<hash of its inputs>/`,
 * built in a temporary directory and renamed into place only when complete, so an interrupted
 * build never leaves a stage that looks finished. Beside its files a stage keeps its result
 * (`result.json`), so a cached stage answers exactly as a fresh one. Replacing and pruning stages
 * is safe only for one build at a time: callers hold the cache directory's lock (lock.ts,
 * CACHE_LOCK) while they run stages, as buildIso does.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fileAccessError } from '@psyops/core';

const COMPLETE_MARK = '.complete';
const RESULT_FILE = 'result.json';
/** Where a stage is built before it is renamed into place: `<name>-<hash>.tmp-<random>`. */
const TEMP_INFIX = '.tmp-';
/** How a path inside the stage directory is stored in its result: relative, so it survives the rename. */
const IN_STAGE = 'pathInStage';
/** Older stage outputs of the same name kept besides the newest (for switching back and forth). */
const KEEP_OLDER = 1;

// The code that builds a stage is one of its inputs: a new psyops must not reuse what an older
// one built. Hashing this module's own file covers the library (and the bundled CLI) as a whole.
let codeHash: string | undefined;
function ownCodeHash(): string {
  if (codeHash === undefined) {
    try {
      codeHash = createHash('sha256')
        .update(readFileSync(fileURLToPath(import.meta.url)))
        .digest('hex');
    } catch {
      codeHash = 'unknown';
    }
  }
  return codeHash;
}

/** A stable hash of JSON-able inputs (object keys sorted). */
function hashInputs(value: unknown): string {
  const canonical = JSON.stringify(value, (_key, item: unknown) =>
    item !== null && typeof item === 'object' && !Array.isArray(item)
      ? Object.fromEntries(Object.entries(item as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : item,
  );
  return createHash('sha256').update(canonical).digest('hex');
}

/** Where stages are cached, and whether to build them again even when cached (`--rebuild`). */
export interface StageCache {
  dir: string;
  rebuild?: boolean;
  /**
   * Stops waiting for a stage being built: its temporary directory is removed at once (after a
   * moment for the tools killed by the same Ctrl-C to exit) and runStage rejects with the reason.
   */
  signal?: AbortSignal;
}

/** How long an aborted stage's build may take to end by itself before its temporary directory is removed anyway. */
const ABORT_GRACE_MS = 1000;

export interface StageResult<T> {
  /** What the stage's build returned; its paths inside the stage point into the stage directory. */
  value: T;
  cached: boolean;
}

/**
 * Runs stage `name` for `inputs`: returns its stored result when it is cached (and `rebuild` is not
 * set), else builds it with `build(tempDir)` and stores what that returns. The result must be
 * JSON-able; strings naming paths inside `tempDir` are stored relative and come back inside the
 * stage directory.
 */
export async function runStage<T>(cache: StageCache, name: string, inputs: unknown, build: (dir: string) => Promise<T>): Promise<StageResult<T>> {
  const stagesDir = join(cache.dir, 'stages');
  const dir = join(stagesDir, `${name}-${hashInputs({ name, inputs, code: ownCodeHash() }).slice(0, 20)}`);
  if (!cache.rebuild && (await exists(join(dir, COMPLETE_MARK)))) {
    // Marks it as recently used, so pruning keeps it.
    const now = new Date();
    await utimes(dir, now, now).catch(() => undefined);
    return { value: await readStageResult<T>(dir), cached: true };
  }
  cache.signal?.throwIfAborted();
  await mkdir(stagesDir, { recursive: true });
  const temp = `${dir}${TEMP_INFIX}${randomBytes(4).toString('hex')}`;
  try {
    await mkdir(temp);
    await writeFile(join(temp, RESULT_FILE), encodeResult(await untilAborted(build(temp), cache.signal, temp), temp));
    await writeFile(join(temp, COMPLETE_MARK), '');
    await rm(dir, { recursive: true, force: true });
    await rename(temp, dir);
  } catch (error) {
    await rm(temp, { recursive: true, force: true, maxRetries: 3 });
    throw error;
  }
  await pruneOlder(stagesDir, name, dir);
  return { value: await readStageResult<T>(dir), cached: false };
}

/**
 * `work`, or, once `signal` aborts, its reason: after waiting up to ABORT_GRACE_MS for `work` to
 * end (a tool killed by the same Ctrl-C fails at once). Work that runs on after that still has
 * `temp` removed when it ends, should the process live that long.
 */
async function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined, temp: string): Promise<T> {
  if (!signal) return work;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => {
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((done) => {
        timer = setTimeout(done, ABORT_GRACE_MS);
      });
      void Promise.race([work.then(noop, noop), grace]).then(() => {
        clearTimeout(timer);
        reject(signal.reason);
      });
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work, aborted]);
  } catch (error) {
    if (signal.aborted) void work.then(noop, noop).then(() => rm(temp, { recursive: true, force: true, maxRetries: 3 }).catch(noop));
    throw error;
  } finally {
    signal.removeEventListener('abort', onAbort!);
  }
}

const noop = () => undefined;

/**
 * Removes the temporary directories of stages whose build was killed (SIGKILL, a power cut) from
 * `<cacheDir>/stages`. Only for the holder of the cache directory's lock: no other build can be
 * using them then.
 */
export async function removeStageLeftovers(cacheDir: string): Promise<string[]> {
  const stagesDir = join(cacheDir, 'stages');
  const entries = await readdir(stagesDir).catch(() => [] as string[]);
  const leftovers = entries.filter((entry) => /-[0-9a-f]{20}\.tmp-[0-9a-f]{8}$/.test(entry)).map((entry) => join(stagesDir, entry));
  await Promise.all(leftovers.map((path) => rm(path, { recursive: true, force: true, maxRetries: 3 })));
  return leftovers;
}

function encodeResult(value: unknown, dir: string): string {
  return JSON.stringify(value ?? null, (_key, item: unknown) => {
    if (typeof item !== 'string' || !isAbsolute(item)) return item;
    const inside = relative(dir, item);
    return inside === '..' || inside.startsWith(`..${sep}`) ? item : { [IN_STAGE]: inside };
  });
}

/** The stored result of the complete stage directory `dir`, its paths inside the stage made absolute again. */
export async function readStageResult<T>(dir: string): Promise<T> {
  const path = join(dir, RESULT_FILE);
  const text = await readFile(path, 'utf8').catch((error: unknown) => {
    throw fileAccessError(error, path, 'stage result');
  });
  return JSON.parse(text, (_key, item: unknown) =>
    item !== null && typeof item === 'object' && IN_STAGE in item ? join(dir, (item as Record<typeof IN_STAGE, string>)[IN_STAGE]) : item,
  ) as T;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Removes older outputs of a stage (and leftovers of interrupted builds), keeping the newest few. */
async function pruneOlder(stagesDir: string, name: string, keep: string): Promise<void> {
  const prefix = `${name}-`;
  const entries = (await readdir(stagesDir)).filter(
    (entry) => entry.startsWith(prefix) && /^[0-9a-f]{20}(\.tmp-[0-9a-f]{8})?$/.test(entry.slice(prefix.length)),
  );
  const dated = await Promise.all(
    entries.map(async (entry) => ({
      path: join(stagesDir, entry),
      mtime: (await stat(join(stagesDir, entry)).catch(() => undefined))?.mtimeMs ?? 0,
      temp: entry.includes('.tmp-'),
    })),
  );
  const complete = dated.filter((entry) => !entry.temp && entry.path !== keep).sort((a, b) => b.mtime - a.mtime);
  // Temporary directories older than an hour belong to builds that were killed.
  const stale = [...complete.slice(KEEP_OLDER), ...dated.filter((entry) => entry.temp && Date.now() - entry.mtime > 3_600_000)];
  await Promise.all(stale.map((entry) => rm(entry.path, { recursive: true, force: true })));
}
