import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { removeStageLeftovers, runStage } from '../src/stage.js';

const scratch = mkdtempSync(join(tmpdir(), 'psyops-stage-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A stage that writes one file and returns its path, another path and a plain value. */
const build = (calls: string[]) => async (dir: string) => {
  calls.push(dir);
  await writeFile(join(dir, 'out.txt'), 'out\n');
  return { file: join(dir, 'out.txt'), dir, elsewhere: '/etc/hostname', count: 3 };
};

describe('runStage', () => {
  it('returns what the build returned, its paths in the stage directory, whether built or cached', async () => {
    const cache = { dir: scratch };
    const calls: string[] = [];
    const first = await runStage(cache, 'example', { a: 1 }, build(calls));
    expect(first.cached).toBe(false);
    expect(calls).toHaveLength(1);
    const stageDir = first.value.dir;
    expect(dirname(stageDir)).toBe(join(scratch, 'stages'));
    expect(stageDir).not.toBe(calls[0]); // built in a temp dir, renamed into place
    expect(first.value).toEqual({ file: join(stageDir, 'out.txt'), dir: stageDir, elsewhere: '/etc/hostname', count: 3 });
    expect(existsSync(first.value.file)).toBe(true);

    const again = await runStage(cache, 'example', { a: 1 }, build(calls));
    expect(again).toEqual({ value: first.value, cached: true });
    expect(calls).toHaveLength(1);

    const rebuilt = await runStage({ ...cache, rebuild: true }, 'example', { a: 1 }, build(calls));
    expect(rebuilt).toEqual({ value: first.value, cached: false });
    expect(calls).toHaveLength(2);
  });

  it('keeps nothing of a failed build', async () => {
    const cache = { dir: join(scratch, 'failing') };
    await expect(
      runStage(cache, 'broken', {}, async (dir) => {
        await writeFile(join(dir, 'half'), '');
        throw new Error('stage failed');
      }),
    ).rejects.toThrow('stage failed');
    expect(readdirSync(join(cache.dir, 'stages'))).toEqual([]);
  });

  it('stops waiting for a build when its signal aborts: rejects with the reason, removes the temp directory', async () => {
    const controller = new AbortController();
    const cache = { dir: join(scratch, 'aborted'), signal: controller.signal };
    let building: string | undefined;
    let finish!: () => void;
    const never = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const run = runStage(cache, 'slow', {}, async (dir) => {
      await writeFile(join(dir, 'half'), '');
      building = dir;
      await never; // a build that does not notice the signal
      return dir;
    });
    for (let i = 0; i < 500 && building === undefined; i++) await new Promise((r) => setTimeout(r, 5));
    expect(readdirSync(join(cache.dir, 'stages'))).toHaveLength(1);
    controller.abort(new Error('interrupted'));
    await expect(run).rejects.toThrow('interrupted');
    expect(readdirSync(join(cache.dir, 'stages'))).toEqual([]);
    finish();
    // Already aborted: nothing is started.
    await expect(runStage(cache, 'other', {}, build([]))).rejects.toThrow('interrupted');
    expect(readdirSync(join(cache.dir, 'stages'))).toEqual([]);
  });

  it('removeStageLeftovers removes the temp directories of killed builds and nothing else', async () => {
    const cache = { dir: join(scratch, 'leftovers') };
    const kept = (await runStage(cache, 'kept', {}, build([]))).value.dir;
    const stages = join(cache.dir, 'stages');
    mkdirSync(join(stages, 'rootfs-0123456789abcdef0123.tmp-89abcdef', 'root', 'usr'), { recursive: true });
    mkdirSync(join(stages, 'unrelated.tmp-folder'));
    const removed = await removeStageLeftovers(cache.dir);
    expect(removed).toEqual([join(stages, 'rootfs-0123456789abcdef0123.tmp-89abcdef')]);
    expect(readdirSync(stages).sort()).toEqual([kept.slice(stages.length + 1), 'unrelated.tmp-folder'].sort());
    expect(await removeStageLeftovers(join(scratch, 'no-cache-here'))).toEqual([]);
  });
});
